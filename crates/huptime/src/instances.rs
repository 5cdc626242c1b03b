//! Instances: the live records of one instance name, from its current master down to older
//! generations still draining, and which instances a command given on the command line means.

use std::collections::BTreeMap;
use std::ffi::OsString;

use huptime_handoff::InstanceRecord;

/// The live records of one instance, newest generation first.
#[derive(Debug)]
pub struct Instance {
    records: Vec<InstanceRecord>,
}

impl Instance {
    /// The current master: the live record with the highest generation.
    pub fn master(&self) -> &InstanceRecord {
        &self.records[0]
    }

    /// Older generations still finishing their connections.
    pub fn draining(&self) -> &[InstanceRecord] {
        &self.records[1..]
    }

    /// Every live record of the instance.
    pub fn records(&self) -> &[InstanceRecord] {
        &self.records
    }
}

/// Groups live records into instances, oldest instance first.
pub fn group(live: Vec<InstanceRecord>) -> Vec<Instance> {
    let mut by_name: BTreeMap<String, Vec<InstanceRecord>> = BTreeMap::new();
    for record in live {
        by_name
            .entry(record.instance.clone())
            .or_default()
            .push(record);
    }
    let mut instances: Vec<Instance> = by_name
        .into_values()
        .map(|mut records| {
            records.sort_by(|a, b| b.generation.cmp(&a.generation).then(a.pid.cmp(&b.pid)));
            Instance { records }
        })
        .collect();
    instances.sort_by_key(|instance| instance.master().since);
    instances
}

/// Whether an instance started as `command` is the one the user means by `words`: the whole
/// command, or the command without its first one or two words, so that `server.py` finds
/// `python3 server.py` and `python3 -u server.py`. Never a prefix: `server.py --port 1` is
/// not `server.py`.
pub fn matches(command: &[OsString], words: &[OsString]) -> bool {
    !words.is_empty() && (0..=2).any(|skip| command.get(skip..) == Some(words))
}

/// The instances matching `words`; all of them when `words` is empty.
pub fn find(live: Vec<InstanceRecord>, words: &[OsString]) -> Vec<Instance> {
    group(live)
        .into_iter()
        .filter(|instance| words.is_empty() || matches(&instance.master().command, words))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use huptime_handoff::{Mode, Phase};

    fn words(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    fn record(instance: &str, pid: i32, generation: u64, since: u64) -> InstanceRecord {
        InstanceRecord {
            instance: instance.into(),
            pid,
            starttime: 1,
            generation,
            mode: Mode::Fork,
            phase: Phase::Serving,
            since,
            generation_since: since,
            signal: libc::SIGHUP,
            command: words("python3 -u server.py"),
            sockets: vec![],
            listeners: vec![],
            connections: 0,
            last: None,
        }
    }

    #[test]
    fn command_matching() {
        let command = words("python3 -u server.py --port 80");
        assert!(matches(&command, &words("python3 -u server.py --port 80")));
        assert!(matches(&command, &words("-u server.py --port 80")));
        assert!(matches(&command, &words("server.py --port 80")));
        assert!(!matches(&command, &words("--port 80")));
        assert!(!matches(&command, &words("python3 -u server.py")));
        assert!(!matches(&command, &words("python3")));
        assert!(!matches(&command, &words("server.py")));
        assert!(!matches(
            &command,
            &words("python3 -u server.py --port 80 x")
        ));
        assert!(!matches(&command, &[]));
        assert!(matches(&words("./srv"), &words("./srv")));
        assert!(!matches(&words("./srv"), &words("srv")));
    }

    #[test]
    fn grouping_picks_highest_generation_as_master() {
        let live = vec![
            record("b", 30, 0, 200),
            record("a", 10, 1, 100),
            record("a", 11, 3, 100),
            record("a", 12, 2, 100),
        ];
        let instances = group(live);
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].master().pid, 11);
        let draining: Vec<i32> = instances[0].draining().iter().map(|r| r.pid).collect();
        assert_eq!(draining, [12, 10]);
        assert_eq!(instances[1].master().pid, 30);
        assert!(instances[1].draining().is_empty());
    }

    #[test]
    fn find_filters_by_command() {
        let mut other = record("c", 40, 0, 50);
        other.command = words("nginx");
        let live = vec![record("a", 10, 0, 100), other];
        assert_eq!(find(live.clone(), &[]).len(), 2);
        let found = find(live.clone(), &words("server.py"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].master().pid, 10);
        assert!(find(live, &words("apache")).is_empty());
    }
}
