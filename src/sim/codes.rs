//! Payment codes as an ACQP reads them (seed 003, "Accept a payment"): which codes are Alipay+
//! codes, and where the routing logic sends each. The kit plays the ACQP when it creates a test
//! payment from a code: a code that would not reach Alipay+ could never come back as an
//! Alipay+ `cancelPayment`, so a scenario refuses it.
//!
//! The seed's regular expressions, written out as plain digit tests (one pass, no regex
//! engine in the binary):
//!
//! | step | expression | meaning |
//! |---|---|---|
//! | 1 | `^(2[5-9]\|30)9\d{10}6\d{5}$` | the 19-digit Alipay+ code: route to Alipay+ |
//! | 2 | `^(2[5-9]\|30)\d{15,21}$` | an AlipayCN / AlipayHK code: to them, if integrated directly |
//! | 3 | `^(2[5-9]\|30)\d003\d*$` (003: a routing number) | a CGCP code of a directly integrated MPP |
//! | 4 | `^(2[5-9]\|30)\d{22}$` | a CGCP code: to Alipay+ when no MPP is integrated directly |
//!
//! Scanners must recognise 16 to 24 digits starting with 25 to 30, and leave room for 32.

/// What an ACQP integrates directly, besides Alipay+: it decides steps 2 to 4.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcqpIntegration {
    /// AlipayCN and AlipayHK reached without Alipay+.
    pub direct_alipay_cn_hk: bool,
    /// Routing numbers (three digits, e.g. `003`) of the MPPs integrated directly.
    pub direct_routing_numbers: Vec<String>,
}

/// Where a scanned code goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Through Alipay+ (steps 1 and 4): Alipay+ may later cancel it at the MPP.
    AlipayPlus,
    /// Straight to AlipayCN or AlipayHK (step 2).
    AlipayCnHk,
    /// Straight to the MPP with this routing number (step 3).
    DirectMpp(String),
    /// An Alipay+ code (or one of the longer codes scanners must accept) no step routes.
    Unrouted,
    /// Not an Alipay+ payment code at all.
    NotAlipayPlus,
}

/// The digits of an Alipay+ code: only ASCII digits, starting with 25 to 30.
fn alipay_plus_digits(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 2
        && b.iter().all(u8::is_ascii_digit)
        && matches!((b[0], b[1]), (b'2', b'5'..=b'9') | (b'3', b'0'))
}

/// Scanners must recognise this code as an Alipay+ code: 16 to 24 digits starting with 25 to
/// 30, or up to 32 digits (the length expansion the seed asks room for).
pub fn is_alipay_plus_code(code: &str) -> bool {
    alipay_plus_digits(code) && (16..=32).contains(&code.len())
}

/// Step 1: `^(2[5-9]|30)9\d{10}6\d{5}$`.
pub fn is_alipay_plus_19(code: &str) -> bool {
    alipay_plus_digits(code)
        && code.len() == 19
        && code.as_bytes()[2] == b'9'
        && code.as_bytes()[13] == b'6'
}

/// Step 2: `^(2[5-9]|30)\d{15,21}$`.
fn is_alipay_cn_hk(code: &str) -> bool {
    alipay_plus_digits(code) && (17..=23).contains(&code.len())
}

/// Step 3: `^(2[5-9]|30)\d{routing}\d*$`: the routing number after the prefix and one digit.
fn routing_number_of(code: &str) -> Option<&str> {
    (alipay_plus_digits(code) && code.len() >= 6).then(|| &code[3..6])
}

/// Step 4: `^(2[5-9]|30)\d{22}$`.
pub fn is_cgcp(code: &str) -> bool {
    alipay_plus_digits(code) && code.len() == 24
}

/// The seed's routing logic, in its order.
pub fn route(code: &str, acqp: &AcqpIntegration) -> Route {
    if !is_alipay_plus_code(code) {
        return Route::NotAlipayPlus;
    }
    if is_alipay_plus_19(code) {
        return Route::AlipayPlus;
    }
    if acqp.direct_alipay_cn_hk && is_alipay_cn_hk(code) {
        return Route::AlipayCnHk;
    }
    if let Some(number) = routing_number_of(code)
        && acqp.direct_routing_numbers.iter().any(|n| n == number)
    {
        return Route::DirectMpp(number.to_string());
    }
    if acqp.direct_routing_numbers.is_empty() && is_cgcp(code) {
        return Route::AlipayPlus;
    }
    Route::Unrouted
}

/// A fresh 19-digit Alipay+ code (step 1), for a test payment made "from a code".
pub fn new_alipay_plus_19(rng: &mut fastrand::Rng) -> String {
    let prefix = rng.u8(25..=30);
    let mut code = format!("{prefix}9");
    for _ in 0..10 {
        code.push(char::from(b'0' + rng.u8(0..10)));
    }
    code.push('6');
    for _ in 0..5 {
        code.push(char::from(b'0' + rng.u8(0..10)));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_alipay_plus() -> AcqpIntegration {
        AcqpIntegration::default()
    }

    #[test]
    fn the_19_digit_code_routes_to_alipay_plus_whatever_else_is_integrated() {
        let direct = AcqpIntegration {
            direct_alipay_cn_hk: true,
            direct_routing_numbers: vec!["003".into()],
        };
        for code in [
            "2591234567890612345",
            "3090000000000600000",
            "2890030000000600000",
        ] {
            assert!(is_alipay_plus_19(code), "{code}");
            assert_eq!(
                route(code, &only_alipay_plus()),
                Route::AlipayPlus,
                "{code}"
            );
            assert_eq!(route(code, &direct), Route::AlipayPlus, "{code}");
        }
    }

    #[test]
    fn near_misses_of_the_19_digit_code_are_not_it() {
        for code in [
            "2491234567890612345",  // prefix 24
            "3191234567890612345",  // prefix 31
            "2581234567890612345",  // third digit not 9
            "2591234567890512345",  // no 6 at position 14
            "259123456789061234",   // 18 digits
            "25912345678906123456", // 20 digits
            "259123456789O612345",  // a letter O
        ] {
            assert!(!is_alipay_plus_19(code), "{code}");
        }
    }

    #[test]
    fn alipay_plus_codes_are_16_to_24_digits_from_25_to_30_with_room_for_32() {
        assert!(is_alipay_plus_code(&format!("25{}", "0".repeat(14)))); // 16
        assert!(is_alipay_plus_code(&format!("30{}", "0".repeat(22)))); // 24
        assert!(is_alipay_plus_code(&format!("27{}", "0".repeat(30)))); // 32
        assert!(!is_alipay_plus_code(&format!("25{}", "0".repeat(13)))); // 15
        assert!(!is_alipay_plus_code(&format!("25{}", "0".repeat(31)))); // 33
        assert!(!is_alipay_plus_code(&format!("24{}", "0".repeat(16))));
        assert!(!is_alipay_plus_code(&format!("31{}", "0".repeat(16))));
        assert!(!is_alipay_plus_code(""));
        assert!(!is_alipay_plus_code("２５00000000000000")); // full-width digits
    }

    #[test]
    fn cgcp_codes_route_to_alipay_plus_only_without_direct_mpps() {
        let code = format!("281003{}", "4".repeat(18));
        assert!(is_cgcp(&code));
        assert_eq!(route(&code, &only_alipay_plus()), Route::AlipayPlus);
        let with_003 = AcqpIntegration {
            direct_routing_numbers: vec!["003".into()],
            ..Default::default()
        };
        assert_eq!(route(&code, &with_003), Route::DirectMpp("003".into()));
        let with_other = AcqpIntegration {
            direct_routing_numbers: vec!["007".into()],
            ..Default::default()
        };
        assert_eq!(route(&code, &with_other), Route::Unrouted);
    }

    #[test]
    fn alipay_cn_hk_codes_go_direct_only_when_integrated() {
        let code = format!("26{}", "1".repeat(16)); // 18 digits, not the 19-digit form
        assert_eq!(route(&code, &only_alipay_plus()), Route::Unrouted);
        let direct = AcqpIntegration {
            direct_alipay_cn_hk: true,
            ..Default::default()
        };
        assert_eq!(route(&code, &direct), Route::AlipayCnHk);
    }

    #[test]
    fn a_32_digit_code_is_accepted_but_not_routed_yet() {
        let code = format!("29{}", "5".repeat(30));
        assert_eq!(route(&code, &only_alipay_plus()), Route::Unrouted);
        assert_eq!(route("1234", &only_alipay_plus()), Route::NotAlipayPlus);
    }

    #[test]
    fn generated_codes_are_19_digit_alipay_plus_codes() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let code = new_alipay_plus_19(&mut rng);
            assert!(is_alipay_plus_19(&code), "{code}");
            assert_eq!(route(&code, &only_alipay_plus()), Route::AlipayPlus);
        }
    }
}
