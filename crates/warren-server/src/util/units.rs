//! Quantities as RabbitMQ's configuration writes them.

/// A byte size as RabbitMQ's configuration accepts it: a number, or a number with a unit
/// (k/K/kiB/KiB, M/MiB, G/GiB, T/TiB powers of 1024; kB/KB, MB, GB, TB powers of 1000).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid byte size '{text}'"))?;
    let mult: u64 = match unit.trim() {
        "" => 1,
        "k" | "K" | "kiB" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(format!("invalid unit in byte size '{text}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("byte size '{text}' is too large"))
}
