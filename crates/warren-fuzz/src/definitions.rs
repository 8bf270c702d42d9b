//! Definitions import: the input is a JSON document imported with
//! `warren_server::definitions::import` into a fresh in-memory broker, as
//! `--load-definitions`, `warren ctl import_definitions` and `POST /api/definitions` do.
//!
//! Checks: no panic, and what an import left behind exports to a document that imports
//! into another fresh broker and exports the same again.

use serde_json::Value;
use warren_server::definitions::{export, import};

/// Imports `data` (when it is JSON) into a fresh broker.
pub fn run(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for vhost in [None, Some("/")] {
        let broker = crate::connection::broker();
        let _ = import(&broker, &doc, vhost);
        let exported = export(&broker, None);
        let copy = crate::connection::broker();
        if let Err(e) = import(&copy, &exported, None) {
            panic!("an export does not import: {e:?}\n{exported:#}");
        }
        assert_eq!(
            export(&copy, None),
            exported,
            "export -> import -> export changed"
        );
    }
}
