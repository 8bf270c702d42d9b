//! An unbounded many-to-one queue between tasks that holds no memory while empty.
//!
//! tokio's unbounded channel allocates a block of 32 slots when it is created and keeps
//! it: with two channels per connection (deliveries in, bytes out) that was about 3.5 KiB
//! of every idle connection. This one is a `VecDeque` behind a mutex plus a [`Notify`]: it
//! allocates on the first message and gives large buffers back once drained. Every
//! critical section is a push or a pop, so the lock is never held across an await.

use std::{collections::VecDeque, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Capacity a drained queue may keep; beyond it the buffer is freed.
const KEEP_CAPACITY: usize = 64;

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver_gone: bool,
}

impl<T> State<T> {
    fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if self.items.is_empty() && self.items.capacity() > KEEP_CAPACITY {
            self.items = VecDeque::new();
        }
        item
    }
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

/// The sending side; cheap to clone.
#[derive(Debug)]
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving side (one per mailbox).
#[derive(Debug)]
pub struct Receiver<T>(Arc<Shared<T>>);

pub fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver_gone: false,
        }),
        notify: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        {
            let mut st = self.0.state.lock();
            if st.receiver_gone {
                return Err(item);
            }
            st.items.push_back(item);
        }
        // Stores a permit when the receiver is not waiting yet: no wake-up is lost.
        self.0.notify.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.state.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.0.state.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.0.notify.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.0.state.lock().pop()
    }

    /// Waits for the next item; `None` once every sender is gone and nothing is left.
    /// Cancel-safe: the queue is checked before every wait.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut st = self.0.state.lock();
                if let Some(item) = st.pop() {
                    return Some(item);
                }
                if st.senders == 0 {
                    return None;
                }
            }
            self.0.notify.notified().await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut st = self.0.state.lock();
            st.receiver_gone = true;
            std::mem::take(&mut st.items)
        };
        // Outside the lock: dropping an item may send to another mailbox.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_ends_when_senders_go() {
        let (tx, mut rx) = mailbox();
        let tx2 = tx.clone();
        let producer = tokio::spawn(async move {
            for i in 0..1000 {
                tx2.send(i).expect("receiver alive");
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 1000 {
            got.push(rx.recv().await.expect("item"));
        }
        producer.await.expect("producer");
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_wait_cancelled_by_select_loses_nothing() {
        let (tx, mut rx) = mailbox();
        for round in 0..100u32 {
            tokio::select! {
                _ = rx.recv() => panic!("nothing was sent"),
                _ = tokio::task::yield_now() => {}
            }
            tx.send(round).expect("alive");
            assert_eq!(rx.recv().await, Some(round));
        }
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone_and_buffers_are_freed() {
        let (tx, mut rx) = mailbox();
        for i in 0..1000 {
            tx.send(i).expect("alive");
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.0.state.lock().items.capacity(), 0);
        drop(rx);
        assert_eq!(tx.send(1), Err(1));
    }
}
