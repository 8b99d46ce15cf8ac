//! stub
use crate::config::Config;
/// stub
pub fn cmd_check(_cfg: &Config, _args: &[String]) -> i32 {
    0
}
