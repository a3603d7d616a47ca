//! Tables of the group state machine.
