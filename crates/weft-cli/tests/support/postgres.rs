//! A PostgreSQL database of its own for an end-to-end test: created on
//! the server of `WEFT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped after the
//! test; an unreachable server fails the test, saying how to start one.

/// The server the tests use.
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
    pub fn create() -> Self {
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
        // Unique per process and per database the process makes.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("weft_e2e_{}_{n}", std::process::id());
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

    pub fn url(&self) -> String {
        with_database(&admin_url(), &self.name)
    }

    /// Every row of every table of the database (outside the system
    /// schemas) as PostgreSQL's text form, joined: what a look at the raw
    /// data would see.
    pub fn raw_text(&self) -> String {
        let url = self.url();
        self.rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(conn);
            let tables = client
                .query(
                    "SELECT table_schema, table_name FROM information_schema.tables \
                     WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
                     AND table_type = 'BASE TABLE'",
                    &[],
                )
                .await
                .expect("list the tables");
            let mut out = String::new();
            for t in tables {
                let (schema, table): (String, String) = (t.get(0), t.get(1));
                let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t");
                for row in client.query(&sql, &[]).await.expect("read a table") {
                    out.push_str(&row.get::<_, String>(0));
                    out.push('\n');
                }
            }
            out
        })
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
