//! Users imported with RabbitMQ's sha512 and md5 password hashes log in over AMQP; a user
//! whose hashing algorithm warren does not know is refused, with a warning in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::{Connection, ConnectionProperties};
use warren_integration::{channel, http_request, passive_queue, within, Broker};

// base64(salt ++ HASH(salt ++ password)) with a 4-byte salt, made with Python's hashlib;
// RabbitMQ 3.10.8 imported both and accepted the passwords (see model/auth.rs).
const SHA512_HASH: &str =
    "obLD1ITZGumULlBrtH8N5lT0o9U89f6cBHscT8bMGsFXELf2gcCZb42aoLeJsVsyEkPi1VGowtGBBf2hZO2GCv4LBYo=";
const SHA512_PASSWORD: &str = "s3cret-pw512";
const MD5_HASH: &str = "C63wDSP2otUR3h6tpoGL1SEeyzQ=";
/// "md5-pässwort", percent-encoded for the URL.
const MD5_PASSWORD_IN_URL: &str = "md5-p%C3%A4sswort";

fn url(broker: &Broker, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", broker.port)
}

async fn try_connect(url: &str) -> lapin::Result<Connection> {
    within(
        "connection",
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
}

#[tokio::test]
async fn imported_sha512_and_md5_users_log_in() {
    let broker = Broker::start();
    let defs = serde_json::json!({
        "users": [
            {"name": "u512", "password_hash": SHA512_HASH,
             "hashing_algorithm": "rabbit_password_hashing_sha512", "tags": ""},
            {"name": "umd5", "password_hash": MD5_HASH,
             "hashing_algorithm": "rabbit_password_hashing_md5", "tags": ""}
        ],
        "permissions": [
            {"user": "u512", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "umd5", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
        ]
    });
    let (status, body) = http_request(
        broker.http_port,
        "POST",
        "/api/definitions",
        Some(&defs.to_string()),
    );
    assert!((200..300).contains(&status), "import: {status} {body}");

    // Stored as imported: the hash is not rewritten.
    for (user, hash, algorithm) in [
        ("u512", SHA512_HASH, "rabbit_password_hashing_sha512"),
        ("umd5", MD5_HASH, "rabbit_password_hashing_md5"),
    ] {
        let (status, body) =
            http_request(broker.http_port, "GET", &format!("/api/users/{user}"), None);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["password_hash"], hash);
        assert_eq!(v["hashing_algorithm"], algorithm);
    }

    for (user, password) in [("u512", SHA512_PASSWORD), ("umd5", MD5_PASSWORD_IN_URL)] {
        let conn = try_connect(&url(&broker, user, password))
            .await
            .unwrap_or_else(|e| panic!("{user} could not log in: {e}"));
        let ch = channel(&conn).await;
        assert!(passive_queue(&ch, "absent").await.is_err(), "{user}");
        conn.close(200, "bye".into()).await.unwrap();

        assert!(
            try_connect(&url(&broker, user, "wrong")).await.is_err(),
            "{user} logged in with a wrong password"
        );
    }
}

#[tokio::test]
async fn unknown_hashing_algorithm_is_refused_and_logged() {
    let broker = Broker::start();
    // The API stores whatever algorithm it is given; the hash is a valid sha256 one of
    // "s3cret-pw" (made by RabbitMQ 3.10.8), so only the algorithm name is wrong.
    let (status, body) = http_request(
        broker.http_port,
        "PUT",
        "/api/users/odd",
        Some(
            r#"{"password_hash":"fPFCLmaXz+qXrQBTvZ9o6mAboaxElZrqQu4StMZiaNYQk6FN","hashing_algorithm":"rabbit_password_hashing_bcrypt","tags":""}"#,
        ),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = http_request(
        broker.http_port,
        "PUT",
        "/api/permissions/%2f/odd",
        Some(r#"{"configure":".*","write":".*","read":".*"}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");

    assert!(try_connect(&url(&broker, "odd", "s3cret-pw"))
        .await
        .is_err());
    let mut logged = false;
    for _ in 0..100 {
        logged = broker
            .log()
            .iter()
            .any(|l| l.contains("rabbit_password_hashing_bcrypt") && l.contains("odd"));
        if logged {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(logged, "no warning in the log: {:?}", broker.log());
}
