//! Topic matching through a trie of words with `*` and `#` edges.

use std::collections::{HashMap, HashSet};

use crate::table::DestSet;
use crate::Destination;

const ROOT: usize = 0;

/// Splits a routing key or binding pattern into words the way RabbitMQ's
/// `split_topic_key/1` does: the empty key has zero words, otherwise every
/// `.` separates words and empty words are real words.
pub(crate) fn split_words(key: &str) -> impl Iterator<Item = &str> {
    // `take` drops the single "" that `split` yields for the empty key.
    let n = if key.is_empty() { 0 } else { usize::MAX };
    key.split('.').take(n)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Edge {
    Root,
    Word(Box<str>),
    Star,
    Hash,
}

#[derive(Debug)]
struct Node {
    words: HashMap<Box<str>, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    /// How this node hangs off its parent; needed to prune it.
    edge: Edge,
    parent: usize,
    dests: DestSet,
}

impl Node {
    fn new(edge: Edge, parent: usize) -> Self {
        Node {
            words: HashMap::new(),
            star: None,
            hash: None,
            edge,
            parent,
            dests: DestSet::default(),
        }
    }

    fn is_leafless(&self) -> bool {
        self.dests.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

/// Node 0 is the root (the empty pattern binds there); freed slots are reused.
#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
    free: Vec<usize>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::new(Edge::Root, ROOT)],
            free: Vec::new(),
        }
    }
}

impl Trie {
    fn alloc(&mut self, edge: Edge, parent: usize) -> usize {
        let node = Node::new(edge, parent);
        match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.nodes.get_mut(id) {
                    *slot = node;
                }
                id
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    fn child(&self, id: usize, word: &str) -> Option<usize> {
        let node = self.nodes.get(id)?;
        match word {
            "*" => node.star,
            "#" => node.hash,
            w => node.words.get(w).copied(),
        }
    }

    fn child_or_create(&mut self, id: usize, word: &str) -> usize {
        if let Some(c) = self.child(id, word) {
            return c;
        }
        let edge = match word {
            "*" => Edge::Star,
            "#" => Edge::Hash,
            w => Edge::Word(w.into()),
        };
        let c = self.alloc(edge.clone(), id);
        if let Some(node) = self.nodes.get_mut(id) {
            match edge {
                Edge::Star => node.star = Some(c),
                Edge::Hash => node.hash = Some(c),
                Edge::Word(w) => {
                    node.words.insert(w, c);
                }
                Edge::Root => {}
            }
        }
        c
    }

    pub(crate) fn insert(&mut self, pattern: &str, dest: &Destination) {
        let mut id = ROOT;
        for word in split_words(pattern) {
            id = self.child_or_create(id, word);
        }
        if let Some(node) = self.nodes.get_mut(id) {
            node.dests.add(dest);
        }
    }

    pub(crate) fn remove(&mut self, pattern: &str, dest: &Destination) {
        let mut id = ROOT;
        for word in split_words(pattern) {
            match self.child(id, word) {
                Some(c) => id = c,
                None => return,
            }
        }
        if let Some(node) = self.nodes.get_mut(id) {
            node.dests.remove(dest);
        }
        self.prune(id);
    }

    /// Drops now-useless nodes from `id` upwards so that memory and route
    /// cost follow the live bindings only.
    fn prune(&mut self, mut id: usize) {
        while id != ROOT {
            let Some(node) = self.nodes.get_mut(id) else {
                return;
            };
            if !node.is_leafless() {
                return;
            }
            let parent = node.parent;
            let edge = std::mem::replace(&mut node.edge, Edge::Root);
            if let Some(p) = self.nodes.get_mut(parent) {
                match edge {
                    Edge::Star => p.star = None,
                    Edge::Hash => p.hash = None,
                    Edge::Word(w) => {
                        p.words.remove(&w);
                    }
                    Edge::Root => {}
                }
            }
            self.free.push(id);
            id = parent;
        }
    }

    /// Number of live nodes, root included.
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Appends the destinations of every pattern matching `key`, each once;
    /// returns how many (node, word index) states were visited.
    pub(crate) fn route(&self, key: &str, out: &mut Vec<Destination>) -> usize {
        let words: Vec<&str> = split_words(key).collect();
        let start = out.len();
        let mut matched_nodes = 0usize;
        let mut visited = 0usize;
        // States reached through a `#` node can be reached along many paths
        // (`#.#.#` ...); remembering them keeps the walk polynomial. Other
        // states have a single predecessor, so they are never repeated.
        let mut seen_hash: HashSet<(usize, usize)> = HashSet::new();
        let mut stack: Vec<(usize, usize)> = vec![(ROOT, 0)];
        while let Some((id, i)) = stack.pop() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let is_hash = matches!(node.edge, Edge::Hash);
            if is_hash && !seen_hash.insert((id, i)) {
                continue;
            }
            visited += 1;
            match words.get(i) {
                None => {
                    if !node.dests.is_empty() {
                        matched_nodes += 1;
                        out.extend(node.dests.iter().cloned());
                    }
                }
                Some(word) => {
                    if let Some(c) = node.words.get(*word) {
                        stack.push((*c, i + 1));
                    }
                    if let Some(c) = node.star {
                        stack.push((c, i + 1));
                    }
                    // `#` swallows one more word and stays where it is.
                    if is_hash {
                        stack.push((id, i + 1));
                    }
                }
            }
            // `#` may also match zero words.
            if let Some(c) = node.hash {
                stack.push((c, i));
            }
        }
        if matched_nodes > 1 {
            dedup_from(out, start);
        }
        visited
    }
}

/// Removes repeated destinations from `out[start..]`, keeping the first of each.
pub(crate) fn dedup_from(out: &mut Vec<Destination>, start: usize) {
    if out.len() <= start + 1 {
        return;
    }
    let tail: Vec<Destination> = out.drain(start..).collect();
    let mut seen: HashSet<Destination> = HashSet::with_capacity(tail.len());
    for d in tail {
        if !seen.contains(&d) {
            seen.insert(d.clone());
            out.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Instant;

    fn q(name: &str) -> Destination {
        Destination::Queue(name.into())
    }

    fn words(s: &str) -> Vec<&str> {
        split_words(s).collect()
    }

    /// Straightforward recursive matcher, the oracle for the trie.
    fn ref_match(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|i| ref_match(rest, &key[i..])),
            Some((&"*", rest)) => !key.is_empty() && ref_match(rest, &key[1..]),
            Some((w, rest)) => key.first() == Some(w) && ref_match(rest, &key[1..]),
        }
    }

    fn matches(pattern: &str, key: &str) -> bool {
        let mut t = Trie::default();
        t.insert(pattern, &q("q"));
        let mut out = Vec::new();
        t.route(key, &mut out);
        assert!(out.len() <= 1, "duplicate for {pattern:?} / {key:?}");
        let r = ref_match(&words(pattern), &words(key));
        assert_eq!(
            !out.is_empty(),
            r,
            "trie and reference disagree on {pattern:?} / {key:?}"
        );
        r
    }

    #[test]
    fn split_follows_rabbitmq() {
        assert_eq!(words(""), Vec::<&str>::new());
        assert_eq!(words("a"), vec!["a"]);
        assert_eq!(words("a.b"), vec!["a", "b"]);
        assert_eq!(words("a..b"), vec!["a", "", "b"]);
        assert_eq!(words("."), vec!["", ""]);
        assert_eq!(words("a."), vec!["a", ""]);
        assert_eq!(words(".a"), vec!["", "a"]);
    }

    #[test]
    fn hash_alone_matches_everything() {
        for key in ["", "a", "a.b", "a..b", ".", "x.y.z.w", "#", "*"] {
            assert!(matches("#", key), "{key:?}");
        }
    }

    #[test]
    fn hash_edges() {
        assert!(matches("a.#", "a"));
        assert!(matches("a.#", "a.b"));
        assert!(matches("a.#", "a.b.c"));
        assert!(!matches("a.#", "b"));
        assert!(!matches("a.#", ""));
        assert!(matches("#.a", "a"));
        assert!(matches("#.a", "x.y.a"));
        assert!(!matches("#.a", "a.x"));
        assert!(matches("a.#.b", "a.b"));
        assert!(matches("a.#.b", "a.x.b"));
        assert!(matches("a.#.b", "a.x.y.b"));
        assert!(!matches("a.#.b", "a.x.y"));
        assert!(!matches("a.#.b", "b"));
        for key in ["a.b", "a.x.b", "a.x.y.b", "a.b.b", "a", "b", "a.x"] {
            assert_eq!(matches("a.#.#.b", key), matches("a.#.b", key), "{key:?}");
        }
        assert!(matches("#.#", ""));
        assert!(matches("#.b.#", "b"));
        assert!(matches("#.b.#", "a.b.c"));
        assert!(!matches("#.b.#", "a.c"));
    }

    #[test]
    fn star_edges() {
        assert!(!matches("*.*", "a"));
        assert!(matches("*.*", "a.b"));
        assert!(!matches("*.*", "a.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.*", "a.b"));
        assert!(matches("a.*", "a."));
        assert!(matches("*", "a"));
        assert!(matches("*.b.c", "a.b.c"));
        assert!(matches("a.*.c", "a..c"));
        assert!(matches("*.#", "a"));
        assert!(!matches("*.#", ""));
        assert!(matches("#.*.#", "a"));
        assert!(!matches("#.*.#", ""));
    }

    #[test]
    fn empty_key_is_zero_words() {
        // RabbitMQ's split_topic_key(<<>>) = []: `*` needs a word, the empty
        // pattern binds at the root and matches only the empty key.
        assert!(!matches("*", ""));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(!matches("", "."));
        // "." is two empty words.
        assert!(matches("*.*", "."));
        assert!(matches(".", "."));
        assert!(!matches("*", "."));
    }

    #[test]
    fn special_words_in_key_are_literal() {
        assert!(matches("*", "#"));
        assert!(matches("a.*", "a.*"));
        assert!(!matches("a.b", "a.*"));
        assert!(!matches("a.b", "a.#"));
        assert!(matches("a#", "a#"));
        assert!(!matches("a#", "a"));
        assert!(!matches("a*", "ab"));
    }

    #[test]
    fn rabbitmq_suite_expectations() {
        // The binding list and expectations of RabbitMQ's topic matching test.
        let bindings = [
            ("a.b.c", "t1"),
            ("a.*.c", "t2"),
            ("a.#.b", "t3"),
            ("a.b.b.c", "t4"),
            ("#", "t5"),
            ("#.#", "t6"),
            ("#.b", "t7"),
            ("*.*", "t8"),
            ("a.*", "t9"),
            ("*.b.c", "t10"),
            ("a.#", "t11"),
            ("a.#.#", "t12"),
            ("b.b.c", "t13"),
            ("a.b.b", "t14"),
            ("a.b", "t15"),
            ("b.c", "t16"),
            ("", "t17"),
            ("*.*.*", "t18"),
            ("vodka.martini", "t19"),
            ("a.b.c", "t20"),
            ("*.#", "t21"),
            ("#.*.#", "t22"),
            ("*.#.#", "t23"),
            ("#.#.#", "t24"),
            ("*", "t25"),
            ("#.b.#", "t26"),
        ];
        let mut t = Trie::default();
        for (p, d) in bindings {
            t.insert(p, &q(d));
        }
        let expect = |key: &str, want: &[&str]| {
            let mut out = Vec::new();
            t.route(key, &mut out);
            let got: BTreeSet<String> = out.iter().map(|d| d.name().to_string()).collect();
            let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "key {key:?}");
        };
        expect(
            "a.b.c",
            &[
                "t1", "t2", "t5", "t6", "t10", "t11", "t12", "t18", "t20", "t21", "t22", "t23",
                "t24", "t26",
            ],
        );
        expect(
            "a.b",
            &[
                "t3", "t5", "t6", "t7", "t8", "t9", "t11", "t12", "t15", "t21", "t22", "t23",
                "t24", "t26",
            ],
        );
        expect(
            "a.b.b",
            &[
                "t3", "t5", "t6", "t7", "t11", "t12", "t14", "t18", "t21", "t22", "t23", "t24",
                "t26",
            ],
        );
        expect("", &["t5", "t6", "t17", "t24"]);
        expect(
            "b.c.c",
            &["t5", "t6", "t18", "t21", "t22", "t23", "t24", "t26"],
        );
        expect(
            "a.a.a.a.a",
            &["t5", "t6", "t11", "t12", "t21", "t22", "t23", "t24"],
        );
        expect("vodka.gin", &["t5", "t6", "t8", "t21", "t22", "t23", "t24"]);
        expect(
            "vodka.martini",
            &["t5", "t6", "t8", "t19", "t21", "t22", "t23", "t24"],
        );
        expect(
            "b.b.c",
            &[
                "t5", "t6", "t10", "t13", "t18", "t21", "t22", "t23", "t24", "t26",
            ],
        );
        expect(
            "nothing.here.at.all",
            &["t5", "t6", "t21", "t22", "t23", "t24"],
        );
        expect("oneword", &["t5", "t6", "t21", "t22", "t23", "t24", "t25"]);
    }

    #[test]
    fn many_hashes_do_not_blow_up() {
        let key = vec!["w"; 30].join(".");
        let mut t = Trie::default();
        t.insert("#.#.#.#.#.#.#.#", &q("h"));
        t.insert("#.#.#.#.#.#.#.#.x", &q("never"));
        t.insert("#.w.#.w.#.w.#.w.#.w.#", &q("w5"));
        let began = Instant::now();
        let mut out = Vec::new();
        let visited = t.route(&key, &mut out);
        let names: BTreeSet<String> = out.iter().map(|d| d.name().to_string()).collect();
        assert_eq!(
            names,
            ["h", "w5"]
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>()
        );
        // Bounded by nodes x (words + 1), not by the number of paths.
        assert!(visited <= t.node_count() * 31, "visited {visited}");
        assert!(began.elapsed().as_secs() < 5);
    }

    #[test]
    fn route_cost_follows_matching_branches_only() {
        let mut t = Trie::default();
        for i in 0..10_000 {
            t.insert(&format!("x{i}.y.z"), &q(&format!("q{i}")));
        }
        t.insert("a.b.c", &q("abc"));
        let mut out = Vec::new();
        let visited = t.route("a.b.c", &mut out);
        assert_eq!(out, vec![q("abc")]);
        assert!(visited <= 4, "visited {visited}");
        out.clear();
        let visited = t.route("x42.y.z", &mut out);
        assert_eq!(out, vec![q("q42")]);
        assert!(visited <= 4, "visited {visited}");
    }

    #[test]
    fn same_destination_through_several_patterns_appears_once() {
        let mut t = Trie::default();
        t.insert("a.*", &q("q"));
        t.insert("#", &q("q"));
        t.insert("a.b", &q("q"));
        t.insert("#", &q("r"));
        let mut out = vec![q("before")];
        t.route("a.b", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], q("before"));
        let rest: BTreeSet<Destination> = out[1..].iter().cloned().collect();
        assert_eq!(rest, [q("q"), q("r")].into_iter().collect());
    }

    #[test]
    fn remove_prunes_nodes() {
        let mut t = Trie::default();
        t.insert("a.b.c", &q("q"));
        t.insert("a.#", &q("q"));
        t.insert("a.b.c", &q("r"));
        assert_eq!(t.node_count(), 5);
        t.remove("a.b.c", &q("q"));
        assert_eq!(t.node_count(), 5, "r still uses a.b.c");
        t.remove("a.b.c", &q("r"));
        assert_eq!(t.node_count(), 3);
        t.remove("a.#", &q("q"));
        assert_eq!(t.node_count(), 1);
        // Removing what is not there is harmless.
        t.remove("a.b", &q("q"));
        t.remove("", &q("q"));
        assert_eq!(t.node_count(), 1);
        let mut out = Vec::new();
        t.route("a.b.c", &mut out);
        assert!(out.is_empty());
        // Freed slots are reused.
        t.insert("x.y", &q("q"));
        assert_eq!(t.nodes.len(), 5);
        t.route("x.y", &mut out);
        assert_eq!(out, vec![q("q")]);
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "*", "#"])
    }

    fn key_string() -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 0..6).prop_map(|w| w.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn trie_agrees_with_reference(
            patterns in prop::collection::vec(key_string(), 1..12),
            keys in prop::collection::vec(key_string(), 1..8),
            removed in prop::collection::vec(any::<bool>(), 12),
        ) {
            let mut t = Trie::default();
            for (i, p) in patterns.iter().enumerate() {
                t.insert(p, &q(&format!("q{i}")));
            }
            let check = |t: &Trie, live: &dyn Fn(usize) -> bool| -> Result<(), TestCaseError> {
                for k in &keys {
                    let mut out = Vec::new();
                    t.route(k, &mut out);
                    let got: Vec<String> = out.iter().map(|d| d.name().to_string()).collect();
                    let set: BTreeSet<String> = got.iter().cloned().collect();
                    prop_assert_eq!(set.len(), got.len(), "duplicates for key {:?}", k);
                    let want: BTreeSet<String> = patterns
                        .iter()
                        .enumerate()
                        .filter(|(i, p)| live(*i) && ref_match(&words(p), &words(k)))
                        .map(|(i, _)| format!("q{i}"))
                        .collect();
                    prop_assert_eq!(set, want, "key {:?}", k);
                }
                Ok(())
            };
            check(&t, &|_| true)?;
            for (i, p) in patterns.iter().enumerate() {
                if removed[i] {
                    t.remove(p, &q(&format!("q{i}")));
                }
            }
            check(&t, &|i| !removed[i])?;
            for (i, p) in patterns.iter().enumerate() {
                if !removed[i] {
                    t.remove(p, &q(&format!("q{i}")));
                }
            }
            prop_assert_eq!(t.node_count(), 1);
        }
    }
}
