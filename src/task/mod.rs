//! Tasks: [`JoinHandle`], [`JoinError`], [`AbortHandle`], [`JoinSet`], and [`yield_now`].
//!
//! | concept | file |
//! |---|---|
//! | `JoinHandle`: await or abort one task | `join_handle.rs` |
//! | `JoinError`: why a task gave no output | `error.rs` |
//! | `AbortHandle`: cancel a task from any thread | `abort.rs` |
//! | `JoinSet`: a group of tasks joined in completion order | `join_set.rs` |
//! | `yield_now` | `yield_now.rs` |

mod abort;
mod error;
mod join_handle;
mod join_set;
mod yield_now;

pub use abort::AbortHandle;
pub use error::JoinError;
pub use join_handle::JoinHandle;
pub use join_set::JoinSet;
pub use yield_now::{yield_now, YieldNow};
