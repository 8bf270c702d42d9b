//! The shared secret between the broker and its local CLI tools, RabbitMQ's Erlang cookie:
//! `$RABBITMQ_ERLANG_COOKIE`, else `$HOME/.erlang.cookie` (created by the broker when
//! missing: 20 random capital letters, mode 0400, as RabbitMQ does). rabbitmqctl,
//! rabbitmq-diagnostics and rabbitmq-plugins send it with each management API request, so
//! they act as the node's operator whatever users exist, as RabbitMQ's tools do through
//! Erlang distribution; the API accepts it from loopback addresses only.

use std::{io::Write, path::PathBuf};

/// The request header that carries the cookie.
pub(crate) const HEADER: &str = "x-warren-cookie";

fn env_cookie() -> Option<String> {
    std::env::var("RABBITMQ_ERLANG_COOKIE")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
}

fn cookie_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".erlang.cookie"))
}

fn read_file(path: &PathBuf) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
}

/// The cookie for a tool: the variable or the file; none when neither is there.
pub(crate) fn for_tool() -> Option<String> {
    env_cookie().or_else(|| read_file(&cookie_path()?))
}

/// The cookie for the broker: the variable, the file, or a new file. `Err` says why none
/// could be had (the tools then need credentials).
pub(crate) fn for_broker() -> Result<String, String> {
    if let Some(c) = env_cookie() {
        return Ok(c);
    }
    let path = cookie_path().ok_or("HOME is not set")?;
    if let Some(c) = read_file(&path) {
        return Ok(c);
    }
    let cookie = new_cookie()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o400);
    match options.open(&path) {
        Ok(mut f) => {
            f.write_all(cookie.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(cookie)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_file(&path).ok_or_else(|| format!("{} is empty", path.display()))
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

fn new_cookie() -> Result<String, String> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
    Ok(bytes.iter().map(|b| char::from(b'A' + b % 26)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_cookies_are_twenty_capital_letters_and_differ() {
        let a = new_cookie().unwrap();
        let b = new_cookie().unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
    }
}
