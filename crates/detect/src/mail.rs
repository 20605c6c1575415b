//! What the MailItemsAccessed detections read of a record.

use std::borrow::Cow;

use tokenward_event::{Event, EventKind};

/// The text every MailItemsAccessed record contains.
pub const ANCHORS: &[&str] = &["MailItemsAccessed"];

/// Paths the mail detections read.
pub const FIELDS: &[&str] = &[
    "MailboxOwnerUPN",
    "OperationProperties",
    "MailAccessType",
    "IsThrottled",
    "ClientInfoString",
    "OperationCount",
    "Folders.FolderItems",
];

/// Whether the event is a MailItemsAccessed audit record.
pub fn is_mail(ev: &Event) -> bool {
    ev.kind == EventKind::Audit
        && ev
            .operation()
            .is_some_and(|o| o.eq_ignore_ascii_case("MailItemsAccessed"))
}

/// The mailbox read (owner, else the acting user).
pub fn mailbox(ev: &Event) -> &str {
    ev.mailbox().unwrap_or("(unknown mailbox)")
}

/// `MailAccessType` (`Bind`, `Sync`), in `OperationProperties` or at the root.
pub fn access_type(ev: &Event) -> Option<Cow<'_, str>> {
    ev.name_value("OperationProperties", "MailAccessType")
        .or_else(|| ev.scalar("MailAccessType"))
}

/// `IsThrottled`, in `OperationProperties` or at the root.
pub fn throttled(ev: &Event) -> Option<Cow<'_, str>> {
    ev.name_value("OperationProperties", "IsThrottled")
        .or_else(|| ev.scalar("IsThrottled"))
}

/// The client (`ClientInfoString`, else the user agent).
pub fn client(ev: &Event) -> Option<String> {
    ev.get_str("ClientInfoString")
        .or_else(|| ev.user_agent().map(str::to_owned))
}

/// Texts (lower case) that mark desktop Outlook in a client string: MAPI
/// (`Client=MSExchangeRPC`) on Windows, Outlook for Mac.
pub const DESKTOP_OUTLOOK_MARKERS: [&str; 4] = [
    "msexchangerpc",
    "outlook-mac",
    "macoutlook",
    "microsoft outlook",
];

/// Desktop Outlook: a client string with one of [`DESKTOP_OUTLOOK_MARKERS`].
pub fn is_desktop_outlook(client_info: &str) -> bool {
    let c = client_info.to_ascii_lowercase();
    DESKTOP_OUTLOOK_MARKERS.iter().any(|m| c.contains(m))
}
