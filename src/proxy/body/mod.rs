//! The two body types of the data path: `request` (below the endpoint sessions, which send it)
//! and `response` (above them: it holds an endpoint connection or stream until it ends).

pub mod request;
pub mod response;

pub use request::{BodyStalled, ClientBody, ReqBody, ReqBodyError, Tee};
pub use response::{read_ahead, Ending, OnEnd, RespBody, RespBodyError, Then};
