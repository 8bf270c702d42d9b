//! One error type for everything a client can get wrong, mapped 1:1 to AMQP reply codes.
//!
//! A handler returns `Err(AmqpError)`; the channel or connection loop turns it into
//! `channel.close` or `connection.close` according to [`AmqpError::scope`], so a `?` in a
//! method handler always produces the close RabbitMQ would send.

use std::fmt;

/// AMQP 0-9-1 reply codes used by RabbitMQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyCode {
    ConnectionForced,
    InvalidPath,
    AccessRefused,
    NotFound,
    ResourceLocked,
    PreconditionFailed,
    FrameError,
    SyntaxError,
    CommandInvalid,
    ChannelError,
    UnexpectedFrame,
    ResourceError,
    NotAllowed,
    NotImplemented,
    InternalError,
}

impl ReplyCode {
    pub fn code(self) -> u16 {
        match self {
            ReplyCode::ConnectionForced => 320,
            ReplyCode::InvalidPath => 402,
            ReplyCode::AccessRefused => 403,
            ReplyCode::NotFound => 404,
            ReplyCode::ResourceLocked => 405,
            ReplyCode::PreconditionFailed => 406,
            ReplyCode::FrameError => 501,
            ReplyCode::SyntaxError => 502,
            ReplyCode::CommandInvalid => 503,
            ReplyCode::ChannelError => 504,
            ReplyCode::UnexpectedFrame => 505,
            ReplyCode::ResourceError => 506,
            ReplyCode::NotAllowed => 530,
            ReplyCode::NotImplemented => 540,
            ReplyCode::InternalError => 541,
        }
    }

    /// The name RabbitMQ puts in front of reply texts.
    pub fn name(self) -> &'static str {
        match self {
            ReplyCode::ConnectionForced => "CONNECTION_FORCED",
            ReplyCode::InvalidPath => "INVALID_PATH",
            ReplyCode::AccessRefused => "ACCESS_REFUSED",
            ReplyCode::NotFound => "NOT_FOUND",
            ReplyCode::ResourceLocked => "RESOURCE_LOCKED",
            ReplyCode::PreconditionFailed => "PRECONDITION_FAILED",
            ReplyCode::FrameError => "FRAME_ERROR",
            ReplyCode::SyntaxError => "SYNTAX_ERROR",
            ReplyCode::CommandInvalid => "COMMAND_INVALID",
            ReplyCode::ChannelError => "CHANNEL_ERROR",
            ReplyCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ReplyCode::ResourceError => "RESOURCE_ERROR",
            ReplyCode::NotAllowed => "NOT_ALLOWED",
            ReplyCode::NotImplemented => "NOT_IMPLEMENTED",
            ReplyCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// Soft errors close a channel; hard errors close the connection (AMQP 0-9-1 1.2).
    pub fn scope(self) -> Scope {
        match self {
            ReplyCode::AccessRefused
            | ReplyCode::NotFound
            | ReplyCode::ResourceLocked
            | ReplyCode::PreconditionFailed => Scope::Channel,
            _ => Scope::Connection,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

/// An error to report to the client: code, RabbitMQ-style text, the method that caused it
/// and whether it closes the channel or the whole connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: ReplyCode,
    /// Full reply text, e.g. `NOT_FOUND - no queue 'x' in vhost '/'`.
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
    pub scope: Scope,
    /// What failed inside the broker (an I/O error, say), for the log; never sent to the
    /// client, whose text stays RabbitMQ's.
    pub cause: Option<String>,
}

impl AmqpError {
    pub fn new(code: ReplyCode, detail: impl fmt::Display) -> Self {
        AmqpError {
            code,
            text: format!("{} - {}", code.name(), detail),
            class_id: 0,
            method_id: 0,
            scope: code.scope(),
            cause: None,
        }
    }

    /// Records what failed inside the broker (see [`AmqpError::cause`]).
    pub fn caused_by(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// The text after RabbitMQ's `CODE - ` prefix, as the management API shows it.
    pub fn detail(&self) -> &str {
        self.text
            .strip_prefix(self.code.name())
            .and_then(|t| t.strip_prefix(" - "))
            .unwrap_or(&self.text)
    }

    /// Same text, but closes the connection even if the code is a soft one (RabbitMQ
    /// does this for e.g. access refusals during connection.open).
    pub fn on_connection(mut self) -> Self {
        self.scope = Scope::Connection;
        self
    }

    /// Records the method that caused the error, unless one is already set.
    pub fn with_method(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    pub fn not_found(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::NotFound, detail)
    }
    pub fn precondition(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::PreconditionFailed, detail)
    }
    pub fn access_refused(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::AccessRefused, detail)
    }
    pub fn resource_locked(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::ResourceLocked, detail)
    }
    pub fn command_invalid(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::CommandInvalid, detail)
    }
    pub fn channel_error(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::ChannelError, detail)
    }
    pub fn unexpected_frame(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::UnexpectedFrame, detail)
    }
    pub fn not_allowed(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::NotAllowed, detail)
    }
    pub fn not_implemented(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::NotImplemented, detail)
    }
    pub fn frame_error(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::FrameError, detail)
    }
    pub fn syntax_error(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::SyntaxError, detail)
    }
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::InternalError, detail)
    }

    /// `NOT_FOUND - no queue 'x' in vhost '/'`
    pub fn no_queue(name: &str, vhost: &str) -> Self {
        Self::not_found(format_args!("no queue '{name}' in vhost '{vhost}'"))
    }
    /// `NOT_FOUND - no exchange 'x' in vhost '/'`
    pub fn no_exchange(name: &str, vhost: &str) -> Self {
        Self::not_found(format_args!("no exchange '{name}' in vhost '{vhost}'"))
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.code.code())
    }
}

impl std::error::Error for AmqpError {}

pub type AmqpResult<T> = Result<T, AmqpError>;

/// A reply text as a shortstr: cut to 255 bytes (on a character boundary), since error
/// texts quote client input and the field cannot hold more.
pub fn short_text(text: &str) -> amq_protocol::types::ShortString {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    amq_protocol::types::ShortString::from(&text[..end])
}

/// Formats bytes the way RabbitMQ's error texts print a binary: `<<"abc">>` when
/// printable, `<<0,20,0,10>>` otherwise.
pub use warren_router::erlang_binary;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_rabbitmq_form() {
        let e = AmqpError::no_queue("x", "/").with_method(50, 10);
        assert_eq!(e.text, "NOT_FOUND - no queue 'x' in vhost '/'");
        assert_eq!(e.code.code(), 404);
        assert_eq!(e.scope, Scope::Channel);
        assert_eq!((e.class_id, e.method_id), (50, 10));
        // The first method recorded wins.
        let e = e.with_method(60, 40);
        assert_eq!((e.class_id, e.method_id), (50, 10));
    }

    #[test]
    fn long_reply_texts_are_cut_to_a_shortstr() {
        let long = "é".repeat(200);
        let cut = short_text(&long);
        assert!(cut.as_str().len() <= 255);
        assert!(long.starts_with(cut.as_str()));
        assert_eq!(short_text("short").as_str(), "short");
    }

    #[test]
    fn binaries_print_like_erlang() {
        assert_eq!(erlang_binary(b""), "<<>>");
        assert_eq!(erlang_binary(b"abc"), "<<\"abc\">>");
        assert_eq!(erlang_binary(&[0, 20, 0, 10, 0]), "<<0,20,0,10,0>>");
        assert_eq!(erlang_binary(b"a\"b"), "<<\"a\\\"b\">>");
    }

    #[test]
    fn hard_errors_close_the_connection() {
        for code in [
            ReplyCode::FrameError,
            ReplyCode::SyntaxError,
            ReplyCode::CommandInvalid,
            ReplyCode::ChannelError,
            ReplyCode::UnexpectedFrame,
            ReplyCode::NotAllowed,
            ReplyCode::NotImplemented,
            ReplyCode::InternalError,
        ] {
            assert_eq!(AmqpError::new(code, "x").scope, Scope::Connection);
        }
        let e = AmqpError::access_refused("no").on_connection();
        assert_eq!(e.scope, Scope::Connection);
    }
}
