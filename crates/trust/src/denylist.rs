//! Keys known to be compromised, denied whatever a policy or key set says.

/// `kid` values denied out of the box.
///
/// `1LTMzakihiRla_8z2BEJVXeWMqo`: the MSA signing key acquired by
/// Storm-0558 (MSRC, 2023-07-14 and 2023-09-06; CISA/FBI advisory AA23-193A).
pub const BUILTIN_DENIED_KIDS: &[&str] = &["1LTMzakihiRla_8z2BEJVXeWMqo"];

/// Certificate thumbprints (lower-case hex SHA-1 or SHA-256) denied out of
/// the box: the Storm-0558 key's certificate.
pub const BUILTIN_DENIED_THUMBPRINTS: &[&str] = &[
    "d4b4cccda9228624656bff33d8110955779632aa",
    "43ea0217de39066a36164e21655e8ed7b2efaa67e4155033837ada26df6bb59e",
];
