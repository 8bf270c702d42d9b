#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::{path::PathBuf, process::Command};

/// A scratch directory with keys written by Debian's openssl.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(name: &str) -> Keys {
        let dir = std::env::temp_dir().join(format!("warren-key-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Keys { dir }
    }

    /// Runs openssl in the directory; the test fails when it does.
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl (Debian's openssl package) must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    /// The DER of an unencrypted PEM key, for comparison.
    fn der(&self, name: &str) -> Vec<u8> {
        let key = parse_private_key(&self.read(name), None, "ssl_options").unwrap();
        key.secret_der().to_vec()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rsa_keys(name: &str) -> Keys {
    let k = Keys::new(name);
    k.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "plain.pem",
    ]);
    k
}

#[test]
fn pkcs8_pbes2_aes_256_cbc_decrypts_to_the_plain_key() {
    let k = rsa_keys("p8aes");
    k.openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "plain.pem",
        "-out",
        "enc.pem",
        "-passout",
        "pass:s3cret",
    ]);
    let enc = k.read("enc.pem");
    assert!(String::from_utf8_lossy(&enc).contains("BEGIN ENCRYPTED PRIVATE KEY"));
    let key = parse_private_key(&enc, Some("s3cret"), "ssl_options").unwrap();
    assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
    assert_eq!(key.secret_der(), k.der("plain.pem").as_slice());
}

#[test]
fn pkcs8_pbes2_other_ciphers_and_prfs_decrypt_too() {
    let k = Keys::new("p8more");
    k.openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "plain.pem",
    ]);
    // AES-128, 3DES, OpenSSL 1.0's HMAC-SHA-1 PRF, scrypt, and OpenSSL 3's genpkey -aes256.
    let variants: [&[&str]; 4] = [
        &["-v2", "aes-128-cbc"],
        &["-v2", "des3"],
        &["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA1"],
        &["-scrypt"],
    ];
    for extra in variants {
        let mut args = vec![
            "pkcs8",
            "-topk8",
            "-in",
            "plain.pem",
            "-out",
            "enc.pem",
            "-passout",
            "pass:pw",
        ];
        args.extend_from_slice(extra);
        k.openssl(&args);
        let key = parse_private_key(&k.read("enc.pem"), Some("pw"), "ssl_options")
            .unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert_eq!(key.secret_der(), k.der("plain.pem").as_slice(), "{extra:?}");
    }
    k.openssl(&[
        "pkey",
        "-in",
        "plain.pem",
        "-aes256",
        "-passout",
        "pass:pw",
        "-out",
        "pkey.pem",
    ]);
    let key = parse_private_key(&k.read("pkey.pem"), Some("pw"), "ssl_options").unwrap();
    assert_eq!(key.secret_der(), k.der("plain.pem").as_slice());
}

#[test]
fn legacy_openssl_rsa_aes256_and_des3_decrypt_to_pkcs1() {
    let k = rsa_keys("legacy");
    k.openssl(&[
        "rsa",
        "-in",
        "plain.pem",
        "-traditional",
        "-out",
        "pkcs1.pem",
    ]);
    for cipher in ["-aes256", "-aes128", "-des3"] {
        k.openssl(&[
            "rsa",
            "-in",
            "plain.pem",
            cipher,
            "-traditional",
            "-passout",
            "pass:legacy pw",
            "-out",
            "enc.pem",
        ]);
        let enc = k.read("enc.pem");
        assert!(
            String::from_utf8_lossy(&enc).contains("Proc-Type: 4,ENCRYPTED"),
            "{cipher}"
        );
        let key = parse_private_key(&enc, Some("legacy pw"), "ssl_options")
            .unwrap_or_else(|e| panic!("{cipher}: {e}"));
        assert!(matches!(key, PrivateKeyDer::Pkcs1(_)), "{cipher}");
        assert_eq!(key.secret_der(), k.der("pkcs1.pem").as_slice(), "{cipher}");
    }
}

#[test]
fn legacy_ec_key_decrypts_to_sec1() {
    let k = Keys::new("legacy-ec");
    k.openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "sec1.pem",
    ]);
    k.openssl(&[
        "ec", "-in", "sec1.pem", "-aes256", "-passout", "pass:ec", "-out", "enc.pem",
    ]);
    let key = parse_private_key(&k.read("enc.pem"), Some("ec"), "ssl_options").unwrap();
    assert!(matches!(key, PrivateKeyDer::Sec1(_)));
    assert_eq!(key.secret_der(), k.der("sec1.pem").as_slice());
}

#[test]
fn wrong_or_missing_password_is_named() {
    let k = rsa_keys("wrong");
    k.openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "plain.pem",
        "-out",
        "p8.pem",
        "-passout",
        "pass:right",
    ]);
    k.openssl(&[
        "rsa",
        "-in",
        "plain.pem",
        "-aes256",
        "-traditional",
        "-passout",
        "pass:right",
        "-out",
        "legacy.pem",
    ]);
    for file in ["p8.pem", "legacy.pem"] {
        let pem = k.read(file);
        for wrong in ["wrong", "", "righ", "right "] {
            let e = parse_private_key(&pem, Some(wrong), "management.ssl").unwrap_err();
            assert_eq!(
                e,
                KeyError::WrongPassword {
                    setting: "management.ssl".into()
                },
                "{file} with {wrong:?}"
            );
            assert!(e.to_string().contains("management.ssl.password"));
        }
        let e = parse_private_key(&pem, None, "ssl_options").unwrap_err();
        assert_eq!(
            e,
            KeyError::NoPassword {
                setting: "ssl_options".into()
            }
        );
        assert!(e
            .to_string()
            .contains("no password is set (ssl_options.password)"));
    }
}

#[test]
fn a_password_for_a_plain_key_is_ignored() {
    let k = rsa_keys("plainpw");
    let with = parse_private_key(&k.read("plain.pem"), Some("unused"), "ssl_options").unwrap();
    assert_eq!(with.secret_der(), k.der("plain.pem").as_slice());
}

#[test]
fn unknown_legacy_cipher_and_garbage_are_not_called_a_wrong_password() {
    let pem = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                DEK-Info: BF-CBC,0011223344556677\n\nAAAAAAAAAAAAAAAAAAAAAA==\n\
                -----END RSA PRIVATE KEY-----\n";
    let e = parse_private_key(pem, Some("x"), "ssl_options").unwrap_err();
    assert!(
        matches!(e, KeyError::Unsupported(ref m) if m.contains("BF-CBC")),
        "{e}"
    );
    let pem = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let e = parse_private_key(pem, Some("x"), "ssl_options").unwrap_err();
    assert!(matches!(e, KeyError::Malformed(_)), "{e}");
    let e = parse_private_key(b"no pem here", Some("x"), "ssl_options").unwrap_err();
    assert_eq!(e, KeyError::NoKey);
}

#[test]
fn evp_bytes_to_key_matches_openssl() {
    // `openssl enc -aes-256-cbc -P -md md5 -S 0001020304050607 -pass pass:password`
    let k = Keys::new("kdf");
    let out = Command::new("openssl")
        .args([
            "enc",
            "-aes-256-cbc",
            "-P",
            "-md",
            "md5",
            "-S",
            "0001020304050607",
            "-pass",
            "pass:password",
        ])
        .current_dir(&k.dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("key="))
        .expect("openssl enc -P prints key=");
    let got = bytes_to_key(b"password", &[0, 1, 2, 3, 4, 5, 6, 7], 32);
    let got: String = got.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(got, want.trim());
}
