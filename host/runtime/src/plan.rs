//! From job graph to tasks: chains operators and wires bounded channels.
//!
//! An operator joins its upstream operator's chain (and runs on the same
//! thread, with no channel between them) when its only input is that
//! operator's main stream over a forward edge and nobody else reads it.
//! Every other edge becomes one bounded channel per (producer subtask,
//! consumer subtask) pair, so each consumer tracks each producer's
//! watermark and a full channel blocks exactly the producer feeding it.
//!
//! Listing a plan's tasks ([`tasks`]) and checking its size ([`check`]) only
//! count: nothing is allocated per channel. A bounded crossbeam channel
//! allocates its whole capacity when it is made, so [`build`] refuses a plan
//! whose channels would hold more than [`CHANNEL_SLOTS_MAX`] batch slots
//! before it makes any (the job file bounds `channel_batches_max` too; this
//! holds even for a `JobSpec` that did not come from a job file).

use std::collections::HashMap;
use std::sync::Arc;

use crate::channel::{Receiver, Sender, bounded};
use serde::{Deserialize, Serialize};
use weir_core::job::{CHANNEL_SLOTS_MAX, CHANNELS_MAX, Edge, JobSpec, StreamRef};

use crate::gate::{Gate, OutputEdge};
use crate::message::Message;
use crate::metrics::NodeCounters;

/// One task of a job's plan: the unit a cluster places on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskId {
    /// Split `split` of the job's `source`-th source.
    Source { source: u32, split: u32 },
    /// Subtask `subtask` of the `chain`-th operator chain.
    Chain { chain: u32, subtask: u32 },
    /// The job's `sink`-th sink (sinks run as one task).
    Sink { sink: u32 },
}

impl TaskId {
    /// The subtask index, which decides the slot under slot sharing: slot
    /// `i` runs subtask `i` of every node, as in Flink.
    pub fn subtask(&self) -> u32 {
        match *self {
            TaskId::Source { split, .. } => split,
            TaskId::Chain { subtask, .. } => subtask,
            TaskId::Sink { .. } => 0,
        }
    }
}

/// Every task of `job`'s plan, in the order [`build`] makes them. Counts
/// only: no channel is made.
pub fn tasks(job: &JobSpec) -> Vec<TaskId> {
    let layout = Layout::new(job);
    let sources = job.sources.iter().enumerate().flat_map(|(source, s)| {
        (0..s.parallelism).map(move |split| TaskId::Source {
            source: source as u32,
            split,
        })
    });
    let chains = layout.chains.iter().enumerate().flat_map(|(chain, ops)| {
        (0..job.operators[ops[0]].parallelism).map(move |subtask| TaskId::Chain {
            chain: chain as u32,
            subtask,
        })
    });
    let sinks = (0..job.sinks.len()).map(|sink| TaskId::Sink { sink: sink as u32 });
    sources.chain(chains).chain(sinks).collect()
}

/// The chain that runs `operator`, by its index in [`tasks`]' chain ids.
pub fn chain_of(job: &JobSpec, operator: &str) -> Option<u32> {
    let index = job.operators.iter().position(|o| o.name == operator)?;
    let layout = Layout::new(job);
    layout
        .chains
        .iter()
        .position(|ops| ops.contains(&index))
        .map(|chain| chain as u32)
}

/// How much a plan would allocate for its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSize {
    pub channels: u64,
    /// Channels × `channel_batches_max`.
    pub channel_slots: u64,
}

/// Counts `job`'s channels without making any, and refuses a plan over
/// [`CHANNELS_MAX`] or [`CHANNEL_SLOTS_MAX`] with the field to lower.
pub fn check(job: &JobSpec) -> anyhow::Result<PlanSize> {
    let layout = Layout::new(job);
    let channels: u64 = layout
        .edges()
        .map(|e| {
            channel_count(
                e.consumed.edge,
                e.producer_parallelism,
                e.consumed.consumer_parallelism,
            )
        })
        .sum();
    let channel_slots = channels.saturating_mul(job.channel_batches_max as u64);
    let at = job.file.display();
    if channels > CHANNELS_MAX {
        anyhow::bail!(
            "{at}: the job needs {channels} channels (every hash, rebalance or broadcast edge \
             has one per pair of subtasks); at most {CHANNELS_MAX} are allowed: lower the parallelism"
        );
    }
    if channel_slots > CHANNEL_SLOTS_MAX {
        anyhow::bail!(
            "{at}: [job] channel_batches_max = {} over {channels} channels would allocate \
             {channel_slots} batch slots up front; at most {CHANNEL_SLOTS_MAX} are allowed: \
             lower channel_batches_max or the parallelism",
            job.channel_batches_max
        );
    }
    Ok(PlanSize {
        channels,
        channel_slots,
    })
}

fn channel_count(edge: Edge, producers: u32, consumers: u32) -> u64 {
    if edge == Edge::Forward {
        u64::from(producers.min(consumers))
    } else {
        u64::from(producers) * u64::from(consumers)
    }
}

/// One channel between two tasks. The plan keeps a clone of both ends so
/// that a worker can hand the end of a task it does not run to the network.
pub(crate) struct ChannelPlan {
    pub(crate) producer: TaskId,
    pub(crate) consumer: TaskId,
    pub(crate) tx: Sender<Message>,
    pub(crate) rx: Receiver<Message>,
}

pub(crate) struct InputChannel {
    pub(crate) rx: Receiver<Message>,
    /// The consumer's logical input number (its `input` list order).
    pub(crate) input: u32,
}

pub(crate) struct SourceTaskPlan {
    pub(crate) source: usize,
    pub(crate) split: u32,
    pub(crate) gate: Gate,
    /// Readers of `<source>.dead-letter` (none unless the job names it).
    pub(crate) dead_letter_gate: Gate,
}

pub(crate) struct ChainLinkPlan {
    pub(crate) operator: usize,
    pub(crate) late_gate: Gate,
}

pub(crate) struct ChainTaskPlan {
    pub(crate) chain: u32,
    pub(crate) subtask: u32,
    pub(crate) links: Vec<ChainLinkPlan>,
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) gate: Gate,
}

pub(crate) struct SinkTaskPlan {
    pub(crate) sink: usize,
    pub(crate) inputs: Vec<InputChannel>,
}

impl SourceTaskPlan {
    pub(crate) fn id(&self) -> TaskId {
        TaskId::Source {
            source: self.source as u32,
            split: self.split,
        }
    }
}

impl ChainTaskPlan {
    pub(crate) fn id(&self) -> TaskId {
        TaskId::Chain {
            chain: self.chain,
            subtask: self.subtask,
        }
    }
}

impl SinkTaskPlan {
    pub(crate) fn id(&self) -> TaskId {
        TaskId::Sink {
            sink: self.sink as u32,
        }
    }
}

pub(crate) struct Plan {
    pub(crate) sources: Vec<SourceTaskPlan>,
    pub(crate) chains: Vec<ChainTaskPlan>,
    pub(crate) sinks: Vec<SinkTaskPlan>,
    /// Every channel, indexed by its number (the same on every node).
    pub(crate) channels: Vec<ChannelPlan>,
    /// Per node name.
    pub(crate) counters: HashMap<String, Arc<NodeCounters>>,
    /// Operator names per chain, for logs.
    pub(crate) chain_names: Vec<Vec<String>>,
}

fn main_stream(node: &str) -> StreamRef {
    StreamRef {
        node: node.to_string(),
        late: false,
        dead_letter: false,
    }
}

/// Chains of operator indices into `job.operators`.
fn chains(job: &JobSpec, readers: &HashMap<StreamRef, usize>) -> Vec<Vec<usize>> {
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: HashMap<&str, usize> = HashMap::new();
    for (index, op) in job.operators.iter().enumerate() {
        let joins = match op.inputs.as_slice() {
            [only] if only.edge == Edge::Forward && !only.stream.late => chain_of
                .get(only.stream.node.as_str())
                .copied()
                .filter(|&c| {
                    let tail = *chains[c].last().expect("chains are non-empty");
                    job.operators[tail].name == only.stream.node
                        && readers.get(&only.stream) == Some(&1)
                }),
            _ => None,
        };
        let chain = match joins {
            Some(c) => {
                chains[c].push(index);
                c
            }
            None => {
                chains.push(vec![index]);
                chains.len() - 1
            }
        };
        chain_of.insert(&op.name, chain);
    }
    chains
}

/// One stream read by one consumer, with the consumer's input number.
struct ConsumedStream {
    stream: StreamRef,
    consumer: ConsumerRef,
    input: u32,
    edge: Edge,
    consumer_parallelism: u32,
}

/// An edge that becomes channels (a consumer not chained to its producer).
struct ChannelEdge<'a> {
    consumed: &'a ConsumedStream,
    producer_parallelism: u32,
}

/// The plan's shape without any channel: who reads what, and the chains.
struct Layout<'j> {
    consumed: Vec<ConsumedStream>,
    chains: Vec<Vec<usize>>,
    /// Operator index -> head of the chain it was folded into (heads absent).
    chained: HashMap<usize, usize>,
    chain_of_operator: HashMap<&'j str, u32>,
    job: &'j JobSpec,
}

impl<'j> Layout<'j> {
    fn new(job: &'j JobSpec) -> Layout<'j> {
        let mut consumed = Vec::new();
        for (i, op) in job.operators.iter().enumerate() {
            for (n, input) in op.inputs.iter().enumerate() {
                consumed.push(ConsumedStream {
                    stream: input.stream.clone(),
                    consumer: ConsumerRef::Operator(i),
                    input: n as u32,
                    edge: input.edge,
                    consumer_parallelism: op.parallelism,
                });
            }
        }
        for (i, sink) in job.sinks.iter().enumerate() {
            for (n, stream) in sink.inputs.iter().enumerate() {
                consumed.push(ConsumedStream {
                    stream: stream.clone(),
                    consumer: ConsumerRef::Sink(i),
                    input: n as u32,
                    edge: Edge::Rebalance,
                    consumer_parallelism: 1,
                });
            }
        }
        let mut readers: HashMap<StreamRef, usize> = HashMap::new();
        for c in &consumed {
            *readers.entry(c.stream.clone()).or_default() += 1;
        }
        let chains = chains(job, &readers);
        let chained = chains
            .iter()
            .flat_map(|c| c.iter().skip(1).map(move |&op| (op, c[0])))
            .collect();
        let chain_of_operator = chains
            .iter()
            .enumerate()
            .flat_map(|(c, ops)| {
                ops.iter()
                    .map(move |&op| (job.operators[op].name.as_str(), c as u32))
            })
            .collect();
        Layout {
            consumed,
            chains,
            chained,
            chain_of_operator,
            job,
        }
    }

    /// The edges that become channels, in the order [`build`] wires them.
    fn edges(&self) -> impl Iterator<Item = ChannelEdge<'_>> {
        self.consumed.iter().filter_map(|c| {
            if let ConsumerRef::Operator(op) = c.consumer
                && self.chained.contains_key(&op)
            {
                return None; // fed by a direct call within its chain
            }
            Some(ChannelEdge {
                consumed: c,
                // A resolved job names only nodes it has; 0 subtasks make
                // no channels rather than a panic if one slipped through.
                producer_parallelism: self.job.parallelism_of(&c.stream.node).unwrap_or(0),
            })
        })
    }
}

/// Makes every task and channel of `job`'s plan; refuses (before making
/// any channel) a plan over the bounds [`check`] applies.
pub(crate) fn build(job: &JobSpec) -> anyhow::Result<Plan> {
    check(job)?;
    let layout = Layout::new(job);
    let chain_of_operator = &layout.chain_of_operator;
    let producer_task = |node: &str, subtask: u32| match chain_of_operator.get(node) {
        Some(&chain) => TaskId::Chain { chain, subtask },
        None => TaskId::Source {
            source: job
                .sources
                .iter()
                .position(|s| s.name == node)
                .unwrap_or(usize::MAX) as u32,
            split: subtask,
        },
    };
    let mut channels = Vec::new();

    let mut outputs: HashMap<(StreamRef, u32), Gate> = HashMap::new();
    let mut operator_inputs: HashMap<(usize, u32), Vec<InputChannel>> = HashMap::new();
    let mut sink_inputs: HashMap<usize, Vec<InputChannel>> = HashMap::new();
    for e in layout.edges() {
        let ConsumedStream {
            ref stream,
            consumer,
            input,
            edge,
            consumer_parallelism,
        } = *e.consumed;
        let producer_parallelism = e.producer_parallelism;
        let capacity = job.channel_batches_max;
        // senders[k][j]: producer subtask k to consumer subtask j.
        let mut senders: Vec<Vec<Sender<Message>>> =
            vec![Vec::new(); producer_parallelism as usize];
        for j in 0..consumer_parallelism {
            for k in 0..producer_parallelism {
                if edge == Edge::Forward && k != j {
                    continue;
                }
                let (tx, rx) = bounded(capacity);
                channels.push(ChannelPlan {
                    producer: producer_task(&stream.node, k),
                    consumer: match consumer {
                        ConsumerRef::Operator(op) => TaskId::Chain {
                            chain: layout.chain_of_operator[job.operators[op].name.as_str()],
                            subtask: j,
                        },
                        ConsumerRef::Sink(sink) => TaskId::Sink { sink: sink as u32 },
                    },
                    tx: tx.clone(),
                    rx: rx.clone(),
                });
                senders[k as usize].push(tx);
                let channel = InputChannel { rx, input };
                match consumer {
                    ConsumerRef::Operator(op) => {
                        operator_inputs.entry((op, j)).or_default().push(channel)
                    }
                    ConsumerRef::Sink(sink) => sink_inputs.entry(sink).or_default().push(channel),
                }
            }
        }
        for (k, targets) in senders.into_iter().enumerate() {
            let gate = outputs.entry((stream.clone(), k as u32)).or_default();
            gate.edges.push(OutputEdge::new(
                edge,
                targets,
                job.max_parallelism,
                job.batch_records_max,
            ));
        }
    }

    let mut take_gate =
        |stream: StreamRef, subtask: u32| outputs.remove(&(stream, subtask)).unwrap_or_default();
    let mut sources = Vec::new();
    for (index, source) in job.sources.iter().enumerate() {
        for split in 0..source.parallelism {
            sources.push(SourceTaskPlan {
                source: index,
                split,
                gate: take_gate(main_stream(&source.name), split),
                dead_letter_gate: take_gate(
                    StreamRef {
                        node: source.name.clone(),
                        late: false,
                        dead_letter: true,
                    },
                    split,
                ),
            });
        }
    }
    let mut chain_tasks = Vec::new();
    for (chain_index, chain) in layout.chains.iter().enumerate() {
        let head = &job.operators[chain[0]];
        let tail = &job.operators[*chain.last().expect("non-empty")];
        for subtask in 0..head.parallelism {
            let links = chain
                .iter()
                .map(|&op| ChainLinkPlan {
                    operator: op,
                    late_gate: take_gate(
                        StreamRef {
                            node: job.operators[op].name.clone(),
                            late: true,
                            dead_letter: false,
                        },
                        subtask,
                    ),
                })
                .collect();
            chain_tasks.push(ChainTaskPlan {
                chain: chain_index as u32,
                subtask,
                links,
                inputs: operator_inputs
                    .remove(&(chain[0], subtask))
                    .unwrap_or_default(),
                gate: take_gate(main_stream(&tail.name), subtask),
            });
        }
    }
    let sinks = (0..job.sinks.len())
        .map(|sink| SinkTaskPlan {
            sink,
            inputs: sink_inputs.remove(&sink).unwrap_or_default(),
        })
        .collect();
    let counters = job
        .sources
        .iter()
        .map(|s| &s.name)
        .chain(job.operators.iter().map(|o| &o.name))
        .chain(job.sinks.iter().map(|s| &s.name))
        .map(|name| (name.clone(), Arc::new(NodeCounters::default())))
        .collect();
    let chain_names = layout
        .chains
        .iter()
        .map(|c| c.iter().map(|&i| job.operators[i].name.clone()).collect())
        .collect();
    Ok(Plan {
        sources,
        chains: chain_tasks,
        sinks,
        channels,
        counters,
        chain_names,
    })
}

#[derive(Debug, Clone, Copy)]
enum ConsumerRef {
    Operator(usize),
    Sink(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn job(text: &str) -> JobSpec {
        weir_core::job::parse(text, Path::new("job.toml")).unwrap()
    }

    const PIPELINE: &str = r#"
[job]
name = "p"
parallelism = 2
[[source]]
name = "src"
kind = "generator"
records = 10
parallelism = 2
[[operator]]
name = "a"
wasm = "a.wasm"
input = "src"
[[operator]]
name = "b"
wasm = "b.wasm"
input = "a"
[[operator]]
name = "c"
wasm = "c.wasm"
input = "b"
edge = "hash"
[[sink]]
name = "out"
kind = "stdout"
input = "c"
"#;

    #[test]
    fn forward_operators_chain_and_hash_edges_wire_all_pairs() {
        let plan = build(&job(PIPELINE)).unwrap();
        assert_eq!(plan.chain_names, vec![vec!["a", "b"], vec!["c"]]);
        assert_eq!(plan.chains.len(), 4, "two chains at parallelism 2");
        let c0 = plan
            .chains
            .iter()
            .find(|t| t.links[0].operator == 2 && t.subtask == 0)
            .unwrap();
        assert_eq!(
            c0.inputs.len(),
            2,
            "hash edge: one channel from each producer subtask"
        );
        let a1 = plan
            .chains
            .iter()
            .find(|t| t.links[0].operator == 0 && t.subtask == 1)
            .unwrap();
        assert_eq!(
            a1.inputs.len(),
            1,
            "forward from the source: only its partner split"
        );
        assert_eq!(plan.sinks[0].inputs.len(), 2);
    }

    #[test]
    fn every_channel_names_its_producer_and_consumer_task() {
        let plan = build(&job(PIPELINE)).unwrap();
        // src -> a (forward, 2), c -> ... (hash from chain a-b: 2x2), c -> out (2).
        assert_eq!(plan.channels.len(), 2 + 4 + 2);
        let hash: Vec<_> = plan
            .channels
            .iter()
            .filter(|c| matches!(c.consumer, TaskId::Chain { chain: 1, .. }))
            .map(|c| (c.producer, c.consumer))
            .collect();
        assert_eq!(hash.len(), 4);
        assert!(hash.contains(&(
            TaskId::Chain {
                chain: 0,
                subtask: 1
            },
            TaskId::Chain {
                chain: 1,
                subtask: 0
            }
        )));
        assert!(plan.channels.iter().any(|c| c.producer
            == TaskId::Source {
                source: 0,
                split: 1
            }
            && c.consumer
                == TaskId::Chain {
                    chain: 0,
                    subtask: 1
                }));
        assert_eq!(tasks(&job(PIPELINE)).len(), 2 + 4 + 1);
    }

    #[test]
    fn a_stream_with_two_readers_does_not_chain() {
        let text = PIPELINE.replace("input = \"c\"", "input = [\"c\", \"a\"]");
        let plan = build(&job(&text)).unwrap();
        assert_eq!(plan.chain_names, vec![vec!["a"], vec!["b"], vec!["c"]]);
    }

    /// The task ids of a built plan, in its order.
    fn built_tasks(job: &JobSpec) -> Vec<TaskId> {
        let plan = build(job).unwrap();
        plan.sources
            .iter()
            .map(SourceTaskPlan::id)
            .chain(plan.chains.iter().map(ChainTaskPlan::id))
            .chain(plan.sinks.iter().map(SinkTaskPlan::id))
            .collect()
    }

    #[test]
    fn listing_tasks_matches_the_built_plan() {
        for text in [
            PIPELINE.to_string(),
            PIPELINE.replace("input = \"c\"", "input = [\"c\", \"a\"]"),
            PIPELINE.replace("edge = \"hash\"", "edge = \"broadcast\"\nparallelism = 3"),
        ] {
            let job = job(&text);
            assert_eq!(tasks(&job), built_tasks(&job), "{text}");
        }
    }

    #[test]
    fn check_counts_channels_as_build_makes_them() {
        let job = job(&PIPELINE.replace("edge = \"hash\"", "edge = \"hash\"\nparallelism = 3"));
        let size = check(&job).unwrap();
        // src -> a (forward, 2), b -> c (hash, 2 x 3), c -> out (3).
        assert_eq!(size.channels, 2 + 6 + 3);
        assert_eq!(size.channels, build(&job).unwrap().channels.len() as u64);
        assert_eq!(
            size.channel_slots,
            size.channels * job.channel_batches_max as u64
        );
    }

    #[test]
    fn a_huge_channel_capacity_is_an_error_not_an_abort() {
        // What the coordinator once aborted on (SIGABRT in `build`): the
        // bound holds even for a spec the job-file parser did not check.
        let mut huge = job(PIPELINE);
        huge.channel_batches_max = 1_000_000_000_000;
        assert_eq!(tasks(&huge).len(), 2 + 4 + 1, "listing allocates nothing");
        let err = format!("{:#}", build(&huge).err().expect("refused"));
        assert!(
            err.contains("channel_batches_max = 1000000000000")
                && err.contains(&format!("at most {CHANNEL_SLOTS_MAX}")),
            "{err}"
        );
        huge.channel_batches_max = usize::MAX;
        assert!(check(&huge).is_err(), "slot count saturates, no overflow");
    }

    #[test]
    fn too_many_channels_are_refused_by_count() {
        let mut wide = job(PIPELINE);
        for op in &mut wide.operators {
            op.parallelism = 2048;
        }
        for source in &mut wide.sources {
            source.parallelism = 2048;
        }
        // b -> c is a hash edge: 2048 x 2048 channels.
        let err = check(&wide).unwrap_err().to_string();
        assert!(err.contains("needs 4198400 channels"), "{err}");
    }
}
