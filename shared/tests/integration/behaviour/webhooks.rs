//! Tenants' webhook endpoints in the store: kept per tenant, replaced, and at most n even
//! under concurrent creates.

use crate::common::{APP, Harness};
use chat21::model::EventType;
use chat21::ports::WebhookPut;

fn webhook(app: &str, hook: &str, url: &str) -> chat21::model::Webhook {
    chat21::model::Webhook {
        id: hook.into(),
        app_id: app.into(),
        url: url.into(),
        events: vec![EventType::MessageSent],
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: 1,
        updated_at: 1,
    }
}

pub(super) async fn webhook_endpoints_are_kept_per_tenant_and_bounded(h: &Harness) {
    let store = &h.deps.store;
    assert!(store.list_webhooks(APP).await.unwrap().is_empty());
    let b = webhook(APP, "b", "https://b.example/");
    assert_eq!(store.put_webhook(&b, 3).await.unwrap(), WebhookPut::Created);
    let a = webhook(APP, "a", "https://a.example/");
    assert_eq!(store.put_webhook(&a, 3).await.unwrap(), WebhookPut::Created);
    let mut b2 = b.clone();
    b2.url = "https://b2.example/".into();
    b2.events = vec![EventType::JoinMember, EventType::PresenceChange];
    b2.updated_at = 2;
    assert_eq!(
        store.put_webhook(&b2, 3).await.unwrap(),
        WebhookPut::Replaced
    );
    assert_eq!(
        store.list_webhooks(APP).await.unwrap(),
        vec![a.clone(), b2.clone()]
    );
    assert_eq!(store.get_webhook(APP, "b").await.unwrap(), Some(b2.clone()));
    assert_eq!(store.get_webhook(APP, "zzz").await.unwrap(), None);
    // Another tenant's endpoints are its own.
    assert!(store.list_webhooks("app2").await.unwrap().is_empty());
    assert_eq!(store.get_webhook("app2", "a").await.unwrap(), None);
    let other = webhook("app2", "a", "https://other.example/");
    assert_eq!(
        store.put_webhook(&other, 3).await.unwrap(),
        WebhookPut::Created
    );
    assert_eq!(store.get_webhook(APP, "a").await.unwrap(), Some(a.clone()));

    // The bound: a new one beyond it writes nothing; replacing is still fine.
    let c = webhook(APP, "c", "https://c.example/");
    assert_eq!(store.put_webhook(&c, 3).await.unwrap(), WebhookPut::Created);
    let d = webhook(APP, "d", "https://d.example/");
    assert_eq!(store.put_webhook(&d, 3).await.unwrap(), WebhookPut::Full);
    assert_eq!(store.get_webhook(APP, "d").await.unwrap(), None);
    assert_eq!(
        store.put_webhook(&c, 3).await.unwrap(),
        WebhookPut::Replaced
    );
    // A deletion makes room.
    assert!(store.delete_webhook(APP, "a").await.unwrap());
    assert!(!store.delete_webhook(APP, "a").await.unwrap());
    assert!(!store.delete_webhook("app2", "zzz").await.unwrap());
    assert_eq!(store.put_webhook(&d, 3).await.unwrap(), WebhookPut::Created);
    let ids: Vec<String> = store
        .list_webhooks(APP)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["b", "c", "d"]);
    assert_eq!(store.list_webhooks("app2").await.unwrap(), vec![other]);
}

pub(super) async fn concurrent_webhook_creates_never_exceed_the_bound(h: &Harness) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = h.deps.store.clone();
            tokio::spawn(async move {
                let hook = webhook(APP, &format!("w{i:02}"), "https://x.example/");
                store.put_webhook(&hook, 5).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap() == WebhookPut::Created {
            created += 1;
        }
    }
    assert_eq!(created, 5);
    assert_eq!(h.deps.store.list_webhooks(APP).await.unwrap().len(), 5);
}
