//! The services, supervised: `supervisor` is the loop, driving each service's `state`
//! machine through its `conditions`, starting it (`spawn`), restarting it by the `restart`
//! policy, taking power requests from `signals`, and stopping everything at the end
//! (`shutdown`). Around a start: each service's directories (`dirs`), readiness over HTTP
//! (`http_probe`), and the default-password notices kept in step with /etc/shadow
//! (`password_notices`).

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
