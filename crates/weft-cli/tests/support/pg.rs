//! A fresh PostgreSQL database per test ([`TempDatabase`]), on the server
//! of `WEFT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`): created at start,
//! dropped at the end; an unreachable server fails the test saying how to
//! start one.

pub fn admin_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` pointing at database `db` instead.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

/// A database that exists for the test's lifetime.
pub struct TempDatabase {
    name: String,
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl TempDatabase {
    /// Creates the database (named after the test process and `tag`).
    pub fn create() -> Self {
        Self::create_named("e2e")
    }

    /// Creates database `weft_<tag>_<pid>`.
    pub fn create_named(tag: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = admin_url();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "this test needs a PostgreSQL server at {} ({e}): start one \
                         (`pg_ctlcluster 15 main start` or `service postgresql start`), or set \
                         WEFT_TEST_POSTGRES_URL",
                        weft_store::redact_url(&url)
                    )
                });
            tokio::spawn(conn);
            client
        });
        let name = format!("weft_{tag}_{}", std::process::id());
        rt.block_on(async {
            // Left over by a killed run with the same pid, if any.
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop a leftover test database");
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
        });
        Self { name, rt, client }
    }

    /// The URL of the database.
    pub fn url(&self) -> String {
        with_database(&admin_url(), &self.name)
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = self.rt.block_on(self.client.batch_execute(&sql)) {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}
