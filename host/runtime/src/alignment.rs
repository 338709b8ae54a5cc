//! Barrier alignment over a task's input channels, without IO: which
//! channels may be read, and when every open channel delivered the barrier.

use crate::message::Barrier;

pub(crate) struct Alignment {
    ended: Vec<bool>,
    blocked: Vec<bool>,
    aligning: Option<Barrier>,
}

impl Alignment {
    pub(crate) fn new(inputs: usize) -> Self {
        Alignment {
            ended: vec![false; inputs],
            blocked: vec![false; inputs],
            aligning: None,
        }
    }

    /// Channels to read: open, and not holding back for a barrier.
    pub(crate) fn readable(&self) -> Vec<usize> {
        (0..self.ended.len())
            .filter(|&i| !self.blocked[i] && !self.ended[i])
            .collect()
    }

    pub(crate) fn on_end(&mut self, input: usize) {
        self.ended[input] = true;
    }

    /// Barrier `barrier` arrived on `input`: stop reading it until aligned.
    pub(crate) fn on_barrier(&mut self, input: usize, barrier: Barrier) -> anyhow::Result<()> {
        if let Some(current) = self.aligning
            && current != barrier
        {
            anyhow::bail!(
                "barrier {} arrived while aligning barrier {}",
                barrier.id,
                current.id
            );
        }
        self.aligning = Some(barrier);
        self.blocked[input] = true;
        Ok(())
    }

    /// The barrier, once every open channel delivered it; reading resumes.
    pub(crate) fn take_aligned(&mut self) -> Option<Barrier> {
        let barrier = self.aligning?;
        if (0..self.ended.len()).all(|i| self.blocked[i] || self.ended[i]) {
            self.aligning = None;
            self.blocked.fill(false);
            Some(barrier)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B1: Barrier = Barrier {
        id: 1,
        savepoint: false,
    };

    #[test]
    fn aligns_over_open_channels_and_ended_ones_count_as_aligned() {
        let mut a = Alignment::new(3);
        a.on_barrier(0, B1).unwrap();
        assert_eq!(a.readable(), vec![1, 2]);
        assert_eq!(a.take_aligned(), None);
        a.on_end(2);
        a.on_barrier(1, B1).unwrap();
        assert_eq!(a.readable(), Vec::<usize>::new());
        assert_eq!(a.take_aligned(), Some(B1));
        assert_eq!(a.readable(), vec![0, 1]);
        assert_eq!(a.take_aligned(), None);
    }

    #[test]
    fn a_second_barrier_during_alignment_is_an_error() {
        let mut a = Alignment::new(2);
        a.on_barrier(0, B1).unwrap();
        let b2 = Barrier { id: 2, ..B1 };
        assert!(a.on_barrier(1, b2).is_err());
    }
}
