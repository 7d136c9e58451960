//! Token-bucket bandwidth limiting on a virtual clock (see the bandwidth issue).
