//! One shard, the gateway's unit of work per core: the state it owns, the messages
//! its inbox takes, its housekeeping rounds, the runtime it runs on, its stop signal, and how many shards
//! the CPU budget allows. Starting shards on their threads is the launcher's job
//! (`launch`).

pub mod cpus;
pub mod housekeeping;
pub mod messages;
pub mod runtime;
pub mod state;
pub mod stop;

pub use messages::{deliver, Inbox, ShardMsg};
pub use state::Shard;
