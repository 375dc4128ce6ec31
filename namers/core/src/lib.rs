//! Switchboard's naming core: the dtab language (paths, name trees, dentries, dtabs), binding
//! and delegation (explain) trees, address sets, the watched-value primitive, the `Namer` trait,
//! the default interpreter, the system namers (`/$/...`) and the `io.l5d.rewrite` namer.
//!
//! It knows nothing of HTTP, sockets to backends or config files; backends live in sibling
//! crates (`namers/fs`, ...) that depend on this one.

pub mod addr;
pub mod backoff;
pub mod bind;
pub mod delegate;
pub mod dtab;
pub mod interpreter;
pub mod namer;
pub mod path;
pub mod rewrite;
pub mod service;
pub mod stack;
pub mod syntax;
pub mod system;
pub mod testing;
pub mod transform;
pub mod tree;
pub mod var;

pub use addr::{Addr, Endpoint, Meta};
pub use dtab::{Dentry, Dtab, Prefix, PrefixElem};
pub use interpreter::{ConfiguredNamer, DefaultInterpreter, DtabVar};
pub use namer::{Bound, Name, Namer};
pub use path::Path;
pub use syntax::ParseError;
pub use tree::{NameTree, Weighted};
pub use var::{Activity, NamingError, State, Updater, Var};
