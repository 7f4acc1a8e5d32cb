//! Scale-out: several instances that share PostgreSQL and Redis.

use super::*;

impl Server {
    /// The process id. An instance names its Redis connection `sesame-<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `url` (as the server hands it out, under its public origin) rewritten
    /// to reach this very instance, as a load balancer would route it.
    pub fn route(&self, url: &str) -> String {
        match url.strip_prefix(self.origin.as_str()) {
            Some(path) => self.url(path),
            None => url.to_owned(),
        }
    }
}

impl Redis {
    /// Connections that carry `name` (set with CLIENT SETNAME), from
    /// `CLIENT LIST`.
    pub fn connections_named(&self, name: &str) -> Result<usize> {
        let needle = format!(" name={name} ");
        Ok(self.cli(&["CLIENT", "LIST"])?.lines().filter(|line| line.contains(&needle)).count())
    }

    /// Challenge channels that some instance is subscribed to.
    pub fn challenge_channels(&self) -> Result<usize> {
        Ok(self.cli(&["PUBSUB", "CHANNELS", "sesame:challenge:*"])?.lines().filter(|l| !l.trim().is_empty()).count())
    }
}
