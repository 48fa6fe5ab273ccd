//! Virtual agents: 10,000 agents addressed by key, activated by their first
//! message, each counting what it was told and reminding itself to check in;
//! after a short idle time they are deactivated to the embedded store, and
//! a second round of messages brings them back with their counts.
//!
//! ```text
//! cargo run --release --example virtual_agents
//! ```

use std::time::Duration;

use myriad::{BoxError, Context, Key, Message, Node, NodeConfig, VirtualWorker};

/// What an agent keeps across activations.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Memory {
    told: u64,
    check_ins: u64,
}

struct Agent {
    memory: Memory,
}

impl VirtualWorker for Agent {
    type State = Memory;

    fn state(&self) -> &Memory {
        &self.memory
    }

    async fn handle_message(&mut self, ctx: &mut Context, msg: Message) -> Result<(), BoxError> {
        if msg == "check-in" {
            self.memory.check_ins += 1;
            return Ok(());
        }
        self.memory.told += 1;
        if self.memory.told == 1 {
            ctx.remind_after(Duration::from_millis(50), "check-in")?;
        }
        ctx.reply(format!(
            "told {} times, checked in {} times",
            self.memory.told, self.memory.check_ins
        ))?;
        Ok(())
    }
}

const AGENTS: usize = 10_000;

fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("myriad-virtual-agents-{}", std::process::id()));
    let config = NodeConfig::default()
        .data_dir(&dir)
        .virtual_kind("agent", |_key: &Key, saved: Option<Memory>| Agent {
            memory: saved.unwrap_or_default(),
        })
        .virtual_idle("agent", Duration::from_millis(200));
    let node = Node::spawn(config)?;
    let keys: Vec<Key> = (0..AGENTS)
        .map(|i| Key::new("agent", &format!("customer-{i}")))
        .collect();
    for key in &keys {
        node.send_and_receive(key, "hello", Duration::from_secs(5))?;
    }
    println!("round 1: {:?}", node.virtual_stats()?);
    // Wait until the idle sweep has put every agent to sleep.
    while node.virtual_stats()?.active > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("all asleep; stored: {}", node.stored_keys("agent")?.len());
    let answer = node.send_and_receive(&keys[0], "hello again", Duration::from_secs(5))?;
    println!("{}: {answer}", keys[0]);
    let stats = node.virtual_stats()?;
    println!(
        "activations {}, deactivations {}, load p50 {:?} p99 {:?}, save p50 {:?} p99 {:?}",
        stats.activations,
        stats.deactivations,
        stats.store_loads.p50,
        stats.store_loads.p99,
        stats.store_saves.p50,
        stats.store_saves.p99
    );
    node.shutdown();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
