//! `set_vm_memory_high_watermark` and `set_disk_free_limit`, with rabbitmqctl's
//! arguments, through warren's `PUT /api/warren/...` endpoints (RabbitMQ changes these
//! over Erlang distribution, which has no HTTP equivalent).

use serde_json::{json, Value};

use super::CtlArgs;

#[derive(Debug, clap::Subcommand)]
pub(super) enum AlarmCommand {
    /// FRACTION of memory, or `absolute BYTES` (e.g. `absolute 2GB`).
    #[command(
        name = "set_vm_memory_high_watermark",
        alias = "set-vm-memory-high-watermark"
    )]
    SetVmMemoryHighWatermark {
        #[arg(num_args = 1..=2, required = true)]
        value: Vec<String>,
    },
    /// BYTES (e.g. `1GB`) of free disk space below which publishers are blocked.
    #[command(name = "set_disk_free_limit", alias = "set-disk-free-limit")]
    SetDiskFreeLimit {
        #[arg(num_args = 1..=2, required = true)]
        value: Vec<String>,
    },
}

/// The request body for a watermark given as rabbitmqctl takes it.
fn watermark_body(value: &[String]) -> Result<Value, String> {
    match value {
        [fraction] => {
            let f: f64 = fraction
                .parse()
                .map_err(|_| format!("not a fraction: {fraction}"))?;
            Ok(json!({"relative": f}))
        }
        [kind, bytes] if kind == "absolute" => Ok(json!({"absolute": bytes})),
        _ => Err("usage: set_vm_memory_high_watermark FRACTION | absolute BYTES".into()),
    }
}

/// The request body for a disk limit given as rabbitmqctl takes it.
fn disk_limit_body(value: &[String]) -> Result<Value, String> {
    match value {
        [bytes] => Ok(json!({"limit": bytes})),
        [kind, _] if kind == "mem_relative" => {
            Err("set_disk_free_limit mem_relative is not supported by warren; give bytes".into())
        }
        _ => Err("usage: set_disk_free_limit BYTES".into()),
    }
}

pub(super) fn run(args: &CtlArgs, cmd: &AlarmCommand) -> Result<(), String> {
    match cmd {
        AlarmCommand::SetVmMemoryHighWatermark { value } => {
            let body = watermark_body(value)?;
            args.info(&format!(
                "Setting memory threshold on this node to {} ...",
                value.join(" ")
            ));
            args.call("PUT", "/api/warren/vm-memory-high-watermark", Some(&body))?;
        }
        AlarmCommand::SetDiskFreeLimit { value } => {
            let body = disk_limit_body(value)?;
            args.info(&format!(
                "Setting disk free limit on this node to {} ...",
                value.join(" ")
            ));
            args.call("PUT", "/api/warren/disk-free-limit", Some(&body))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_as_rabbitmqctl_takes_them() {
        assert_eq!(watermark_body(&v(&["0.6"])), Ok(json!({"relative": 0.6})));
        assert_eq!(
            watermark_body(&v(&["absolute", "2GB"])),
            Ok(json!({"absolute": "2GB"}))
        );
        assert!(watermark_body(&v(&["lots"])).is_err());
        assert_eq!(disk_limit_body(&v(&["1GB"])), Ok(json!({"limit": "1GB"})));
        assert!(disk_limit_body(&v(&["mem_relative", "1.5"])).is_err());
    }
}
