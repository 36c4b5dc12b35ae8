//! Typed identifiers. Every resource id is a string on the wire (the
//! reference uses xid-style strings); the newtypes stop a group id from being
//! passed where a peer id is expected.

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }
    };
}

typed_id!(
    /// An account (a tenant: one network).
    AccountId
);
typed_id!(
    /// A peer (one machine running the daemon).
    PeerId
);
typed_id!(
    /// A group of peers and network resources.
    GroupId
);
typed_id!(
    /// An access policy.
    PolicyId
);
typed_id!(
    /// A rule inside a policy.
    RuleId
);
typed_id!(
    /// A posture check.
    PostureCheckId
);
typed_id!(
    /// A network route.
    RouteId
);
typed_id!(
    /// A network (a container of resources and routers).
    NetworkId
);
typed_id!(
    /// A resource inside a network.
    ResourceId
);
typed_id!(
    /// A router of a network.
    RouterId
);
typed_id!(
    /// A nameserver group.
    NameserverGroupId
);
typed_id!(
    /// A user.
    UserId
);
typed_id!(
    /// A personal access token.
    TokenId
);
typed_id!(
    /// A setup key.
    SetupKeyId
);
typed_id!(
    /// An ingress peer.
    IngressPeerId
);
typed_id!(
    /// A port allocation on an ingress peer.
    AllocationId
);
