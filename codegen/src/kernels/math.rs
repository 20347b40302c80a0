//! Inline approximations of the math functions (no libm): each works on `F32` or `F32X4`
//! values and states its maximum error.
