//! Errors of the group coordinator, in its own terms; `protocol::errors` maps each to the Kafka
//! error code clients expect, so they recover by themselves (rejoin, refresh, retry).

/// Why a group request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Another broker coordinates the group (leads its offsets partition).
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// The group id is empty.
    #[error("the group id is empty")]
    InvalidGroupId,
    /// The member id is not a member of the group (removed, expired, or never joined).
    #[error("unknown member id")]
    UnknownMemberId,
    /// The member's generation is not the group's current one.
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    /// The group is rebalancing: the member must rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// Another member holds this `group.instance.id` now.
    #[error("another member holds this group.instance.id")]
    FencedInstanceId,
    /// The member's protocol type or protocols do not match the group's.
    #[error("the protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    /// `session.timeout.ms` is outside the broker's allowed range.
    #[error("the session timeout is outside the allowed range")]
    InvalidSessionTimeout,
    /// A new member must rejoin with the member id it is given (JoinGroup v4+).
    #[error("the member must rejoin with its assigned member id")]
    MemberIdRequired,
    /// The group has as many members as allowed.
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached,
    /// The group does not exist.
    #[error("the group does not exist")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// The group's active members consume the topic whose offsets were to be deleted.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// The committed metadata is larger than allowed.
    #[error("the offset metadata is too large")]
    OffsetMetadataTooLarge,
    /// The topic or partition of a commit does not exist.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The coordinator cannot serve the group right now (shutting down, or its log failed).
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    /// The coordinator key type is not one this broker coordinates.
    #[error("unsupported coordinator key type")]
    UnsupportedKeyType,
}
