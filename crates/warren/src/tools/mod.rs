//! RabbitMQ's command-line tools under their own names: `rabbitmqctl`,
//! `rabbitmq-diagnostics`, `rabbitmq-plugins` and `rabbitmqadmin`, with RabbitMQ 3.10's
//! syntax, output and exit codes, talking to the broker over the management HTTP API.
//!
//! The `warren` binary runs one of them when it is called by that name (a symlink, see
//! `warren install-tools DIR`) or as `warren rabbitmqctl ...`. See docs/tools.md.

mod admin;
mod api;
mod cli;
mod diagnostics;
mod limits;
mod lists;
mod plugins;
mod rabbitmqctl;
mod status;

use std::{ffi::OsString, path::Path, process::ExitCode};

/// The tools, by the names they answer to.
pub const TOOLS: [&str; 4] = [
    "rabbitmqctl",
    "rabbitmq-diagnostics",
    "rabbitmq-plugins",
    "rabbitmqadmin",
];

/// sysexits.h codes, as RabbitMQ's CLI uses them.
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATA_ERR: u8 = 65;
    pub const NO_USER: u8 = 67;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const TEMP_FAIL: u8 = 75;
}

/// Runs a tool when the process was started as one (argv[0]'s file name), or as
/// `warren <tool> ...` / `warren install-tools DIR`; `None` leaves the command line to the
/// broker's own parser.
pub fn dispatch() -> Option<ExitCode> {
    let argv: Vec<String> = std::env::args_os()
        .map(|a: OsString| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = argv.first()?;
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if TOOLS.contains(&name.as_str()) {
        return Some(run(&name, &argv[1..]));
    }
    match argv.get(1).map(String::as_str) {
        Some(tool) if TOOLS.contains(&tool) => Some(run(tool, &argv[2..])),
        Some("install-tools") => Some(install(&argv[2..])),
        _ => None,
    }
}

/// Runs the tool `name` on its arguments (argv without the program name).
pub fn run(name: &str, args: &[String]) -> ExitCode {
    let code = match name {
        "rabbitmqctl" => rabbitmqctl::main(args),
        "rabbitmq-diagnostics" => diagnostics::main(args),
        "rabbitmq-plugins" => plugins::main(args),
        _ => admin::main(args),
    };
    ExitCode::from(code)
}

/// `warren install-tools DIR`: a symlink per tool in DIR, to this binary.
fn install(args: &[String]) -> ExitCode {
    let [dir] = args else {
        eprintln!("usage: warren install-tools DIR   (links rabbitmqctl, rabbitmq-diagnostics, rabbitmq-plugins and rabbitmqadmin in DIR to this binary)");
        return ExitCode::from(exit::USAGE);
    };
    let target = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("install-tools: cannot find this binary: {e}");
            return ExitCode::from(exit::SOFTWARE);
        }
    };
    match install_links(Path::new(dir), &target) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("install-tools: {e}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}

/// Links each tool name in `dir` to `target`, replacing links (not files) already there.
pub(crate) fn install_links(dir: &Path, target: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for tool in TOOLS {
        let link = dir.join(tool);
        if let Ok(meta) = std::fs::symlink_metadata(&link) {
            if !meta.file_type().is_symlink() {
                return Err(format!(
                    "{} exists and is not a link; not replacing it",
                    link.display()
                ));
            }
            std::fs::remove_file(&link)
                .map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
        }
        symlink(target, &link).map_err(|e| format!("cannot link {}: {e}", link.display()))?;
        println!("{} -> {}", link.display(), target.display());
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(target, link).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_links_every_tool_and_replaces_old_links() {
        let dir = std::env::temp_dir().join(format!("warren-tools-{}", std::process::id()));
        let target = Path::new("/bin/true");
        install_links(&dir, target).unwrap();
        install_links(&dir, target).unwrap();
        for tool in TOOLS {
            assert_eq!(std::fs::read_link(dir.join(tool)).unwrap(), target);
        }
        std::fs::remove_file(dir.join("rabbitmqadmin")).unwrap();
        std::fs::write(dir.join("rabbitmqadmin"), "x").unwrap();
        assert!(install_links(&dir, target).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
