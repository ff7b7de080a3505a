//! The services, supervised: `supervisor` is the loop, driving each service's `state`
//! machine through its `conditions`, starting it (`spawn`), restarting it by the `restart`
//! policy, taking power requests from `signals`, and stopping everything at the end
//! (`shutdown`). Around a start: each service's directories (`dirs`), readiness over HTTP
//! (`http_probe`). Every half minute, the `chores`: the default-password notices kept in
//! step with /etc/shadow (`password_notices`) and the persistence disk's reserve.

pub mod chores;
pub mod conditions;
pub mod dirs;
pub mod http_probe;
pub mod password_notices;
pub mod restart;
pub mod shutdown;
pub mod signals;
pub mod spawn;
pub mod state;
pub mod supervisor;
