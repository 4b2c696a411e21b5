//! The four seed scenarios ("cancellation by Alipay+ after payment success"): Alipay+ received a
//! success for a payment it had already closed by an ACQP cancel, closed by timeout, seen succeed
//! through another MPP, or seen fail. At the MPP each is a cancel of a SUCCESS payment, possibly
//! retried by Alipay+; each must queue the full refund exactly once.

use crate::support::spawn_app;
use mpp_cancel::domain::PaymentStatus;

struct Scenario {
    name: &'static str,
    /// How many times Alipay+ sends the cancel (it retries until it has a final answer).
    sends: usize,
    /// Minutes between the payment and the cancel.
    delay_minutes: i64,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "closed by an ACQP cancel before the success arrived",
        sends: 1,
        delay_minutes: 1,
    },
    Scenario {
        name: "closed by timeout before the user paid",
        sends: 3,
        delay_minutes: 2,
    },
    Scenario {
        name: "paid twice, through another MPP first",
        sends: 2,
        delay_minutes: 5,
    },
    Scenario {
        name: "reported failed first, success later",
        sends: 4,
        delay_minutes: 30,
    },
];

#[tokio::test]
async fn each_seed_scenario_queues_one_full_refund() {
    let app = spawn_app().await;
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let id = format!("seed-{i}");
        let paid_at = app.clock_now();
        app.wallet
            .add(&id, PaymentStatus::Success, 1500 + i as i64, "CNY", paid_at);
        app.clock
            .advance(chrono::Duration::minutes(scenario.delay_minutes));

        let mut bodies = Vec::new();
        for _ in 0..scenario.sends {
            bodies.push(app.cancel(&id).await.body);
        }

        assert!(bodies.iter().all(|b| *b == bodies[0]), "{}", scenario.name);
        let (count, amount): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), max(amount_value) FROM refunds WHERE payment_request_id = $1",
        )
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(count, 1, "{}: one refund", scenario.name);
        assert_eq!(
            amount,
            Some(1500 + i as i64),
            "{}: the full amount",
            scenario.name
        );
        assert_eq!(
            app.db.state_of(&id).await.as_deref(),
            Some("refund_pending"),
            "{}",
            scenario.name
        );
    }
}
