//! A sink's thread: writes every batch that reaches it until all inputs end.

use std::sync::Arc;

use anyhow::Context as _;
use crossbeam_channel::Select;
use weir_connectors::Sink;

use crate::message::{Message, TaskError, TaskResult};
use crate::metrics::NodeCounters;
use crate::plan::InputChannel;

pub(crate) struct SinkTask {
    pub(crate) name: String,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) counters: Arc<NodeCounters>,
}

impl SinkTask {
    pub(crate) fn run(mut self) -> TaskResult {
        let mut open = self.inputs.len();
        let mut select = Select::new();
        for input in &self.inputs {
            select.recv(&input.rx);
        }
        while open > 0 {
            let op = select.select();
            let index = op.index();
            match op.recv(&self.inputs[index].rx) {
                Ok(Message::Data(batch)) => {
                    self.counters.add_in(batch.len());
                    self.sink
                        .write(&batch)
                        .with_context(|| format!("sink `{}`", self.name))?;
                }
                Ok(Message::Watermark(_) | Message::Idle) => {}
                Ok(Message::End) => {
                    select.remove(index);
                    open -= 1;
                }
                Err(_) => return Err(TaskError::Cancelled),
            }
        }
        self.sink
            .finish()
            .with_context(|| format!("sink `{}`", self.name))?;
        Ok(())
    }
}
