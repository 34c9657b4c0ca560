//! The crate's one error type: a kind (what went wrong, for callers that branch on it) and a
//! chain of human-readable context, innermost cause last.

use std::fmt;

/// What class of failure an [`Error`] is; the C ABI maps each to its own status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A file could not be read or written.
    Io,
    /// An image is missing, truncated, corrupt, empty or in an unsupported layout.
    Image,
    /// A model file is not ONNX or breaks the model contract.
    Model,
    /// A manifold file or folder is missing keys, malformed or does not match the model.
    Manifold,
    /// An argument is out of range or inconsistent (unknown organ, bad size, ...).
    InvalidArgument,
    /// A NaN or infinity appeared in data that must be finite.
    NonFinite,
    /// The inference engine failed while running a valid model.
    Inference,
    /// Another thread is inside a call that must not run concurrently (a second producer).
    Busy,
    /// A buffer or frame is too small, or larger than the engine's frame slots.
    WrongSize,
    /// A call out of order (a commit without an acquire, a push while a slot is acquired).
    WrongState,
}

/// An error with its context chain. `Display` prints the chain joined by ": ".
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// Outermost context first, innermost cause last.
    chain: Vec<String>,
}

/// The crate's result, with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` whose chain is the one message, the innermost cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, chain: vec![message.into()] }
    }

    /// Wraps a foreign error, keeping its own source chain as text.
    pub fn from_source(kind: ErrorKind, err: &(dyn std::error::Error + 'static)) -> Error {
        let mut chain = vec![err.to_string()];
        let mut src = err.source();
        while let Some(s) = src {
            let text = s.to_string();
            if chain.last() != Some(&text) {
                chain.push(text);
            }
            src = s.source();
        }
        Error { kind, chain }
    }

    /// The class of failure, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Adds an outer layer of context ("what was being done").
    pub fn context(mut self, ctx: impl fmt::Display) -> Error {
        self.chain.insert(0, ctx.to_string());
        self
    }

    /// The messages, outermost context first and innermost cause last.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.chain.join(": "))
    }
}

impl std::error::Error for Error {}

/// `anyhow`-style context on results whose error converts into [`Error`].
pub trait Context<T> {
    /// Adds `ctx` as the error's outermost context; the kind is kept.
    fn context(self, ctx: impl fmt::Display) -> Result<T>;
    /// As [`Context::context`], building the context only on an error.
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(ctx))
    }
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::from_source(ErrorKind::Io, &e)
    }
}

/// Shorthand for returning an error of a kind with a formatted message.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*)))
    };
}

/// Fails with `NonFinite` unless every value is finite.
pub fn ensure_finite<F: Copy + Into<f64>>(what: &str, values: &[F]) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !(*v).into().is_finite()) {
        bail!(NonFinite, "{what} holds a non-finite value at index {i}");
    }
    Ok(())
}
