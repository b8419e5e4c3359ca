//! Conformance: shared state and kernel events.

use super::*;

/// Shared state: per namespace, set / delete / clear.
pub async fn shared_state(store: Arc<dyn Store>) {
    assert!(
        store
            .shared_state("app:base")
            .await
            .expect("read")
            .is_empty()
    );
    let mut d = StateDelta::default();
    d.set.insert("theme".into(), json!("dark"));
    d.set.insert("count".into(), json!(1));
    let s = store
        .update_shared_state("app:base", &d)
        .await
        .expect("update");
    assert_eq!(s.get("theme"), Some(&json!("dark")));
    let mut d2 = StateDelta {
        delete: vec!["theme".into()],
        ..Default::default()
    };
    d2.set.insert("count".into(), json!(2));
    let s2 = store
        .update_shared_state("app:base", &d2)
        .await
        .expect("update");
    let mut want = Map::new();
    want.insert("count".into(), json!(2));
    assert_eq!(s2, want);
    assert_eq!(store.shared_state("app:base").await.expect("read"), want);
    let mut other = StateDelta::default();
    other.set.insert("name".into(), json!("ada"));
    store
        .update_shared_state("user:ada/x y", &other)
        .await
        .expect("update other");
    assert_eq!(
        store.shared_state("app:base").await.expect("read"),
        want,
        "namespaces are separate"
    );
    let cleared = store
        .update_shared_state(
            "app:base",
            &StateDelta {
                clear: true,
                ..Default::default()
            },
        )
        .await
        .expect("clear");
    assert!(cleared.is_empty());
    assert!(
        store
            .shared_state("app:base")
            .await
            .expect("read")
            .is_empty(),
        "clear sticks"
    );
    assert_eq!(
        store
            .shared_state("user:ada/x y")
            .await
            .expect("read")
            .get("name"),
        Some(&Value::from("ada"))
    );
}

/// Kernel events: written in order, read back newest `limit`.
pub async fn events(store: Arc<dyn Store>) {
    let id = store
        .create(new_meta("events"), vec![])
        .await
        .expect("create")
        .id;
    assert!(store.read_events(&id, 10).await.expect("read").is_empty());
    let evs: Vec<Value> = (0..5)
        .map(|i| json!({"event": "tool:pre", "data": {"i": i}}))
        .collect();
    store.write_events(&id, &evs[..2]).await.expect("write");
    store.write_events(&id, &evs[2..]).await.expect("write");
    store.write_events(&id, &[]).await.expect("write nothing");
    assert_eq!(store.read_events(&id, 10).await.expect("read"), evs);
    assert_eq!(
        store.read_events(&id, 2).await.expect("read"),
        evs[3..].to_vec()
    );
    assert!(store.read_events(&id, 0).await.expect("read").is_empty());
    // Events are not records.
    assert_eq!(store.get(&id).await.expect("get").last_seq, 1);
}
