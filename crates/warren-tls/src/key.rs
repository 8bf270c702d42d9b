//! Private keys from PEM, encrypted ones included (`ssl_options.password`), as Erlang's
//! `ssl` reads them: PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2 with PBKDF2 or scrypt and
//! AES-CBC, or 3DES: what `openssl pkcs8 -topk8 -v2 aes-256-cbc` and OpenSSL 3's
//! `genpkey -aes256` write) and OpenSSL's legacy form (`Proc-Type: 4,ENCRYPTED` with
//! `DEK-Info: AES-256-CBC,<iv>` or `DES-EDE3-CBC`, from `openssl rsa -aes256
//! -traditional`), whose key is EVP_BytesToKey(MD5, one round) of the password and the
//! IV's first eight bytes. Kept free of I/O: the caller reads the file.

use aes::{Aes128, Aes192, Aes256};
use base64::Engine;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use md5::{Digest, Md5};
use rustls_pki_types::{
    pem::PemObject, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

/// Why no key came out of a PEM file; the caller adds the setting and the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("holds no private key (PEM: PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("holds an encrypted private key but no password is set ({setting}.password)")]
    NoPassword { setting: String },
    #[error("cannot decrypt the private key: wrong password ({setting}.password)?")]
    WrongPassword { setting: String },
    #[error("holds an encrypted private key warren cannot decrypt: {0}")]
    Unsupported(String),
    #[error("holds a malformed encrypted private key: {0}")]
    Malformed(String),
}

/// The first private key in `pem`, decrypted with `password` when it is encrypted. A
/// password given for a plain key is ignored, as Erlang's `ssl` does. `prefix` names the
/// settings in errors (`ssl_options`).
pub fn parse_private_key(
    pem: &[u8],
    password: Option<&str>,
    prefix: &str,
) -> Result<PrivateKeyDer<'static>, KeyError> {
    let Some(block) = first_key_block(pem)? else {
        return PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NoKey);
    };
    let encrypted = block.label == "ENCRYPTED PRIVATE KEY"
        || block
            .headers
            .iter()
            .any(|(k, v)| k == "Proc-Type" && v.ends_with("ENCRYPTED"));
    if !encrypted {
        return PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NoKey);
    }
    let Some(password) = password else {
        return Err(KeyError::NoPassword {
            setting: prefix.to_string(),
        });
    };
    let wrong = || KeyError::WrongPassword {
        setting: prefix.to_string(),
    };
    if block.label == "ENCRYPTED PRIVATE KEY" {
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(block.der.as_slice())
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let doc = info.decrypt(password.as_bytes()).map_err(|e| match e {
            // A wrong password shows as bad padding (or, rarely, as garbage that is no
            // PrivateKeyInfo); an unknown cipher or KDF as an unsupported algorithm.
            // pkcs5 0.7 reports bad padding on decryption as EncryptFailed.
            pkcs8::Error::EncryptedPrivateKey(
                pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
            )
            | pkcs8::Error::Asn1(_) => wrong(),
            other => KeyError::Unsupported(other.to_string()),
        })?;
        let der = doc.as_bytes().to_vec();
        if !is_der_sequence(&der) {
            return Err(wrong());
        }
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)));
    }
    legacy_cipher_supported(&block)?;
    let der = decrypt_legacy(&block, password).ok_or_else(wrong)?;
    if !is_der_sequence(&der) {
        return Err(wrong());
    }
    match block.label.as_str() {
        "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der))),
        "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))),
        "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))),
        other => Err(KeyError::Unsupported(format!("a legacy encrypted {other}"))),
    }
}

/// One PEM block: its label, RFC 1421 headers and decoded body.
struct Block {
    label: String,
    headers: Vec<(String, String)>,
    der: Vec<u8>,
}

/// The first block whose label names a private key (`... PRIVATE KEY`).
fn first_key_block(pem: &[u8]) -> Result<Option<Block>, KeyError> {
    let text = String::from_utf8_lossy(pem);
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        if !label.ends_with("PRIVATE KEY") {
            continue;
        }
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            let l = l.trim();
            if l == end {
                closed = true;
                break;
            }
            match l.split_once(':') {
                Some((k, v)) if body.is_empty() => {
                    headers.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => body.push_str(l),
            }
        }
        if !closed {
            return Err(KeyError::Malformed(format!("no line {end}")));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| KeyError::Malformed(format!("base64: {e}")))?;
        return Ok(Some(Block {
            label: label.to_string(),
            headers,
            der,
        }));
    }
    Ok(None)
}

/// OpenSSL's EVP_BytesToKey with MD5 and one iteration: D_i = MD5(D_{i-1} || pass || salt).
fn bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(len + 16);
    let mut prev: Vec<u8> = Vec::new();
    while key.len() < len {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(password);
        h.update(salt);
        prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    key.truncate(len);
    key
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>>
where
    cbc::Decryptor<C>: KeyIvInit + BlockDecryptMut,
    C: cbc::cipher::BlockDecryptMut + cbc::cipher::BlockCipher,
{
    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .ok()?
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .ok()
}

/// `None` when the padding is wrong (the wrong password, almost always).
fn decrypt_legacy(block: &Block, password: &str) -> Option<Vec<u8>> {
    let dek = block
        .headers
        .iter()
        .find(|(k, _)| k == "DEK-Info")
        .map(|(_, v)| v.as_str())?;
    let (cipher, iv_hex) = dek.split_once(',')?;
    let iv = hex(iv_hex.trim())?;
    let salt = iv.get(..8)?;
    let pass = password.as_bytes();
    let data = &block.der;
    match cipher.trim() {
        "AES-128-CBC" => cbc_decrypt::<Aes128>(&bytes_to_key(pass, salt, 16), &iv, data),
        "AES-192-CBC" => cbc_decrypt::<Aes192>(&bytes_to_key(pass, salt, 24), &iv, data),
        "AES-256-CBC" => cbc_decrypt::<Aes256>(&bytes_to_key(pass, salt, 32), &iv, data),
        "DES-EDE3-CBC" => cbc_decrypt::<des::TdesEde3>(&bytes_to_key(pass, salt, 24), &iv, data),
        _ => None,
    }
}

/// The legacy ciphers warren decrypts; others are refused as unsupported, not as a
/// wrong password.
fn legacy_cipher_supported(block: &Block) -> Result<(), KeyError> {
    let dek = block
        .headers
        .iter()
        .find(|(k, _)| k == "DEK-Info")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| KeyError::Malformed("Proc-Type ENCRYPTED without DEK-Info".into()))?;
    let cipher = dek.split_once(',').map(|(c, _)| c.trim()).unwrap_or(dek);
    match cipher {
        "AES-128-CBC" | "AES-192-CBC" | "AES-256-CBC" | "DES-EDE3-CBC" => Ok(()),
        other => Err(KeyError::Unsupported(format!(
            "DEK-Info cipher {other} (AES-128/192/256-CBC and DES-EDE3-CBC are)"
        ))),
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `der` is one DER SEQUENCE spanning all of it: decrypting with a wrong
/// password can pass the padding check by chance, but then yields no such thing.
fn is_der_sequence(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return false;
        }
        let Some(bytes) = der.get(2..2 + n) else {
            return false;
        };
        (
            bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)),
            2 + n,
        )
    };
    header + len == der.len()
}

#[cfg(test)]
mod tests;
