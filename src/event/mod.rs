//! The libevent-style callback API, on the same reactor and timers as the async runtime.
//!
//! An [`EventBase`] is a loop of callbacks: [`Event`]s watch a file descriptor, a timeout or a signal and
//! call their callback when it fires; [`BufferEvent`]s own an input and an output [`Buffer`] over a
//! socket and call back when data arrived, when the output drained, and on end-of-file, errors and
//! timeouts; a [`Listener`] accepts connections and hands each to a callback.
//!
//! # One loop for both models
//! An `EventBase` owns an evloop [`Runtime`](crate::Runtime), and [`EventBase::dispatch`] is
//! `runtime.block_on(dispatcher)`: the callback loop *is* the async loop. Inside a callback,
//! [`evloop::spawn`](crate::spawn) and [`spawn_local`](crate::spawn_local) start tasks that run in the same
//! loop, on the same thread; a task holding a [`BaseHandle`] (a cheap `Rc` clone, made by
//! [`EventBase::handle`]) can create and add events that fire in that loop. [`EventBase::block_on`] runs a
//! future with the base's events live.
//!
//! ```
//! use std::time::Duration;
//! use evloop::event::{Event, EventBase, Flags};
//!
//! let base = EventBase::new()?;
//! let handle = base.handle().clone();
//! // A timer whose callback spawns an async task, which in turn adds a callback event.
//! let timer = Event::timer(&base, move |_ctx, _what| {
//!     let handle = handle.clone();
//!     evloop::spawn_local(async move {
//!         evloop::time::sleep(Duration::from_millis(1)).await;
//!         let ev = Event::timer(&handle, |ctx, what| {
//!             assert!(what.contains(Flags::TIMEOUT));
//!             ctx.base().loopbreak();
//!         });
//!         ev.add(Some(Duration::from_millis(1))).unwrap();
//!         std::mem::forget(ev); // keep it alive: the loop ends when it fires
//!     });
//! });
//! timer.add(Some(Duration::from_millis(1)))?;
//! // Tasks do not keep `dispatch` running, pending events do: this one never fires.
//! let keep = Event::timer(&base, |_, _| {});
//! keep.add(None)?;
//! base.dispatch();
//! assert!(base.got_break());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Layout
//! | concept | file |
//! |---|---|
//! | [`EventBase`], [`BaseHandle`], [`ExitHandle`], the dispatcher | `base.rs` |
//! | event slots, active queues, add/del/activate | `core.rs` |
//! | the fd map: one registration per fd, shared by its events | `fdmap.rs` |
//! | the inbox: tokens posted by wakers for the dispatcher | `inbox.rs` |
//! | the base's timers (event timeouts, `loopexit` delays) | `timers.rs` |
//! | [`Event`], [`EventCtx`] | `event.rs` |
//! | [`Buffer`], [`Eol`] | `buffer.rs` |
//! | [`BufferEvent`] | `bufferevent.rs` |
//! | [`Listener`] | `listener.rs` |
//!
//! # Caveats
//! Every event on one fd must agree on [`Flags::ET`] (as in libevent), and an fd watched by events must
//! not also be wrapped in an async I/O object or a `BufferEvent` of the same base: one registration per
//! fd per reactor. Delete the events of an fd before closing it.

mod base;
mod buffer;
mod bufferevent;
mod core;
#[allow(clippy::module_inception)]
mod event;
mod fdmap;
mod inbox;
mod listener;
mod timers;

pub use base::{BaseHandle, EventBase, ExitHandle};
pub use buffer::{Buffer, Eol};
pub use bufferevent::{BevFlags, BufferEvent};
pub use event::{Event, EventCtx};
pub use listener::Listener;

/// Writes the bit operations and the `Debug` listing of a flags newtype.
macro_rules! flag_ops {
    ($t:ident, $($name:ident),*) => {
        impl $t {
            /// No flag set.
            pub const fn empty() -> Self {
                $t(0)
            }

            /// True when every flag of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// True when some flag of `other` is set in `self`.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }

            /// True when no flag is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The raw bits.
            pub const fn bits(self) -> u16 {
                self.0
            }
        }

        impl std::ops::BitOr for $t {
            type Output = $t;
            fn bitor(self, rhs: $t) -> $t {
                $t(self.0 | rhs.0)
            }
        }

        impl std::ops::BitOrAssign for $t {
            fn bitor_assign(&mut self, rhs: $t) {
                self.0 |= rhs.0;
            }
        }

        impl std::ops::BitAnd for $t {
            type Output = $t;
            fn bitand(self, rhs: $t) -> $t {
                $t(self.0 & rhs.0)
            }
        }

        impl std::ops::Not for $t {
            type Output = $t;
            fn not(self) -> $t {
                $t(!self.0)
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut first = true;
                $(
                    if self.contains($t::$name) {
                        if !first {
                            f.write_str(" | ")?;
                        }
                        f.write_str(stringify!($name))?;
                        first = false;
                    }
                )*
                if first {
                    f.write_str("(empty)")?;
                }
                Ok(())
            }
        }
    };
}
pub(crate) use flag_ops;

/// What an [`Event`] watches, and what fired (libevent's `EV_*` flags).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// The fd is readable (or at end-of-file, or failed).
    pub const READ: Flags = Flags(0x02);
    /// The fd is writable (or failed).
    pub const WRITE: Flags = Flags(0x04);
    /// The timeout given to `add` passed; also given to callbacks of pure timers.
    pub const TIMEOUT: Flags = Flags(0x01);
    /// The event watches a signal: its "fd" is the signal number.
    pub const SIGNAL: Flags = Flags(0x08);
    /// The event stays pending after it fires (otherwise it fires once and must be added again).
    pub const PERSIST: Flags = Flags(0x10);
    /// Edge-triggered: fires once per new readiness, so the callback must read or write until
    /// `WouldBlock`. Without it, the event fires as long as the fd stays ready.
    pub const ET: Flags = Flags(0x20);
}

flag_ops!(Flags, READ, WRITE, TIMEOUT, SIGNAL, PERSIST, ET);
