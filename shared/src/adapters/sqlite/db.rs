//! The connections and the threads that own them: one writer, whose jobs are group-committed,
//! and a small pool of readers that WAL lets run beside it. Nothing here blocks an async
//! worker: a job is sent over a channel and its answer awaited.
//!
//! **Group commit.** The writer takes every job waiting (up to [`BATCH`]) and runs them in one
//! transaction, each in its own SAVEPOINT: a job that fails rolls back only its own writes. The
//! answers go out after the COMMIT, so a caller never hears "done" of a write that is not
//! durable (as durable as `synchronous=NORMAL` makes it: see `schema`). One fsync then carries
//! many small writes: under load the batch grows by itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::error;

use crate::error::{Error, Result};

/// Most jobs in one transaction.
const BATCH: usize = 512;
/// Read connections beside the writer (file databases).
pub const READERS: usize = 4;

/// What a write job hands back to the writer: whether it succeeded (else its savepoint is
/// rolled back), and how to answer its caller once the transaction's fate is known.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Answer) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Command {
    Write(WriteJob),
    /// Reads of a `:memory:` database (its one connection is the writer's).
    Read(ReadJob),
    /// Finish what is queued, close the connection, then answer.
    Stop(oneshot::Sender<()>),
}

/// The threads of one database.
pub struct Db {
    writer: Sender<Command>,
    /// `None` for `:memory:` (reads go to the writer), and once stopped.
    readers: Mutex<Option<Sender<ReadJob>>>,
    memory: bool,
    reader_threads: Mutex<Vec<JoinHandle<()>>>,
}

fn gone() -> Error {
    Error::unavailable("the database is closed")
}

fn sql_error(e: rusqlite::Error) -> Error {
    Error::unavailable(format!("database: {e}"))
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        sql_error(e)
    }
}

impl Db {
    /// Starts the writer on `writer` and a reader thread per connection of `readers` (none:
    /// the writer reads too).
    pub fn start(writer: Connection, readers: Vec<Connection>) -> Result<Db> {
        let (send, receive) = channel::<Command>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, receive))
            .map_err(|e| Error::internal(format!("cannot start the writer: {e}")))?;
        let memory = readers.is_empty();
        let mut threads = Vec::new();
        let readers = if memory {
            None
        } else {
            let (send, receive) = channel::<ReadJob>();
            let receive = Arc::new(Mutex::new(receive));
            for (i, connection) in readers.into_iter().enumerate() {
                let receive = receive.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("sqlite-reader-{i}"))
                        .spawn(move || read_loop(connection, &receive))
                        .map_err(|e| Error::internal(format!("cannot start a reader: {e}")))?,
                );
            }
            Some(send)
        };
        Ok(Db {
            writer: send,
            readers: Mutex::new(readers),
            memory,
            reader_threads: Mutex::new(threads),
        })
    }

    /// Runs `job` in the writer's transaction (in its own savepoint) and answers once the
    /// transaction is committed. An `Err` from the job rolls back its writes only.
    pub async fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let job: WriteJob = Box::new(move |connection| {
            let result = catch_unwind(AssertUnwindSafe(|| job(connection)))
                .unwrap_or_else(|_| Err(Error::internal("a database job panicked")));
            let ok = result.is_ok();
            let reply: Answer = Box::new(move |failed_commit: Option<&str>| {
                let result = match failed_commit {
                    None => result,
                    Some(why) => Err(Error::unavailable(format!(
                        "database: the commit failed: {why}"
                    ))),
                };
                let _ = answer.send(result);
            });
            (ok, reply)
        });
        self.writer.send(Command::Write(job)).map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }

    /// Runs `job` on a read connection (a snapshot of what is committed).
    pub async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let job: ReadJob = Box::new(move |connection| {
            let result = catch_unwind(AssertUnwindSafe(|| job(connection)))
                .unwrap_or_else(|_| Err(Error::internal("a database job panicked")));
            let _ = answer.send(result);
        });
        if self.memory {
            self.writer.send(Command::Read(job)).map_err(|_| gone())?;
        } else {
            let readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            readers
                .as_ref()
                .ok_or_else(gone)?
                .send(job)
                .map_err(|_| gone())?;
        }
        answered.await.map_err(|_| gone())?
    }

    /// Closes the readers, then commits what is queued and closes the writer's connection:
    /// the last one, so its close checkpoints the WAL into the database file. Waits for it;
    /// later calls fail as unavailable.
    pub async fn stop(&self) {
        drop(
            self.readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let readers = std::mem::take(
            &mut *self
                .reader_threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let joined = tokio::task::spawn_blocking(move || {
            for reader in readers {
                let _ = reader.join();
            }
        });
        let _ = joined.await;
        let (done, stopped) = oneshot::channel();
        if self.writer.send(Command::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
    }
}

/// Runs the jobs of one transaction; returns the answers owed and whether it is still open.
fn run_batch(connection: &Connection, jobs: Vec<WriteJob>, answers: &mut Vec<Answer>) {
    for job in jobs {
        if let Err(e) = connection.execute_batch("SAVEPOINT job") {
            // Not in a transaction any more (SQLite rolled it back): start one again.
            fail_all(answers, &e.to_string());
            if let Err(e) = connection.execute_batch("BEGIN IMMEDIATE; SAVEPOINT job") {
                let (_, answer) = job(connection);
                answer(Some(&e.to_string()));
                continue;
            }
        }
        let (ok, answer) = job(connection);
        if !ok && connection.execute_batch("ROLLBACK TO job").is_err() {
            // The transaction is gone with everything before: those callers are told.
            fail_all(answers, "the transaction was rolled back");
        }
        let _ = connection.execute_batch("RELEASE job");
        answers.push(answer);
    }
}

fn fail_all(answers: &mut Vec<Answer>, why: &str) {
    for answer in answers.drain(..) {
        answer(Some(why));
    }
}

fn write_loop(connection: Connection, commands: Receiver<Command>) {
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        let Ok(first) = commands.recv() else { break };
        let mut queued = vec![first];
        while queued.len() < BATCH {
            match commands.try_recv() {
                Ok(next) => queued.push(next),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut writes = Vec::new();
        for command in queued {
            match command {
                Command::Write(job) => writes.push(job),
                Command::Read(job) => job(&connection),
                Command::Stop(done) => stop = Some(done),
            }
        }
        if writes.is_empty() {
            continue;
        }
        let mut answers = Vec::with_capacity(writes.len());
        if let Err(e) = connection.execute_batch("BEGIN IMMEDIATE") {
            error!(error = %e, "cannot begin a transaction");
            for job in writes {
                let (_, answer) = job(&connection);
                answer(Some(&e.to_string()));
            }
            continue;
        }
        run_batch(&connection, writes, &mut answers);
        match connection.execute_batch("COMMIT") {
            Ok(()) => answers.into_iter().for_each(|answer| answer(None)),
            Err(e) => {
                error!(error = %e, "a commit failed; its writes are rolled back");
                let _ = connection.execute_batch("ROLLBACK");
                fail_all(&mut answers, &e.to_string());
            }
        }
    }
    // Closing the last connection checkpoints the WAL into the database file.
    if let Err((_, e)) = connection.close() {
        error!(error = %e, "closing the database failed");
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

fn read_loop(connection: Connection, jobs: &Mutex<Receiver<ReadJob>>) {
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.recv()
        };
        match job {
            Ok(job) => job(&connection),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &Connection) -> Result<i64> {
        Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
    }

    /// Many jobs in flight at once share transactions; the one that fails leaves nothing,
    /// the others everything, and each caller hears only once its transaction is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_job_rolls_back_only_itself() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .unwrap();
        let db = Arc::new(Db::start(connection, Vec::new()).unwrap());
        let jobs = (0..200).map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    if n % 50 == 7 {
                        return Err(Error::internal("this job fails after its write"));
                    }
                    Ok(n)
                })
                .await
            })
        });
        let outcomes = futures_util::future::join_all(jobs).await;
        let failed = outcomes
            .iter()
            .filter(|o| o.as_ref().unwrap().is_err())
            .count();
        assert_eq!(failed, 4);
        assert_eq!(db.read(count).await.unwrap(), 196);
        let kept: i64 = db
            .read(|c| Ok(c.query_row("SELECT count(*) FROM t WHERE n % 50 = 7", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(kept, 0);
        db.stop().await;
        assert!(db.write(|_| Ok(())).await.is_err(), "closed");
    }
}
