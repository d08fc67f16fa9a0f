//! Integration tests: the real `parallax` binary against stub OpenAI servers over real HTTP.
//! One test binary (see matklad, "Delete Cargo Integration Tests").

mod support;

mod attribution;
mod backends;
mod crash;
mod faults;
mod hostile;
mod hub;
mod local;
mod plan;
mod preflight;
mod probe;
mod report;
mod run;
mod serve;
mod served;
mod tls;
mod workers;
