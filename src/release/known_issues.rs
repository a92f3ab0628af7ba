//! Flatcar releases with known problems for what kato-image makes from them, read from the
//! release being built (its channel and concrete version), so that a build says so before it
//! writes an artifact that boots wrong.

use super::Channel;

/// A range of releases of one channel, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownIssue {
    pub channel: Channel,
    pub first: [u32; 3],
    pub last: [u32; 3],
    /// What goes wrong, in a few words.
    pub what: &'static str,
    /// Where it is tracked.
    pub reference: &'static str,
}

/// These releases drop `/usr/share/oem` from initrds appended to the PXE initramfs, so a
/// machine booted from an iPXE payload never sees its role's config (flatcar/Flatcar#2023,
/// fixed in March 2026; stable and LTS were never affected).
pub(crate) const PXE_APPENDED_INITRD: [KnownIssue; 2] = [
    KnownIssue::pxe(Channel::Alpha, [4487, 0, 0], [4628, 0, 0]),
    KnownIssue::pxe(Channel::Beta, [4515, 1, 0], [4593, 1, 0]),
];

impl KnownIssue {
    const fn pxe(channel: Channel, first: [u32; 3], last: [u32; 3]) -> Self {
        KnownIssue {
            channel,
            first,
            last,
            what: "drops /usr/share/oem from appended initrds, so PXE-booted machines would not see their role's config",
            reference: "flatcar/Flatcar#2023",
        }
    }

    /// One sentence about release `version` having this issue.
    pub fn about(&self, version: &str) -> String {
        format!(
            "Flatcar {} {version} {} ({})",
            self.channel.name(),
            self.what,
            self.reference
        )
    }
}

/// `X.Y.Z` as numbers; `None` for anything else.
fn parse(version: &str) -> Option<[u32; 3]> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let out = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(out)
}

/// The issue among `issues` that release `version` of `channel` has, if any.
pub(crate) fn affecting(
    issues: &'static [KnownIssue],
    channel: Channel,
    version: &str,
) -> Option<&'static KnownIssue> {
    let version = parse(version)?;
    issues
        .iter()
        .find(|i| i.channel == channel && i.first <= version && version <= i.last)
}

/// The PXE appended-initrd issue of release `version` of `channel`, if it has it.
pub(crate) fn pxe_appended_initrd(channel: Channel, version: &str) -> Option<&'static KnownIssue> {
    affecting(&PXE_APPENDED_INITRD, channel, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pxe_regression_covers_exactly_its_ranges() {
        for (channel, version, affected) in [
            (Channel::Alpha, "4486.9.9", false),
            (Channel::Alpha, "4487.0.0", true),
            (Channel::Alpha, "4600.0.0", true),
            (Channel::Alpha, "4628.0.0", true),
            (Channel::Alpha, "4628.0.1", false),
            (Channel::Beta, "4515.0.9", false),
            (Channel::Beta, "4515.1.0", true),
            (Channel::Beta, "4593.1.0", true),
            (Channel::Beta, "4593.1.1", false),
            (Channel::Stable, "4593.1.0", false),
            (Channel::Stable, "4593.2.0", false),
            (Channel::Lts, "4550.0.0", false),
            (Channel::Alpha, "4600.0", false),
            (Channel::Alpha, "4600.0.0.1", false),
        ] {
            assert_eq!(
                pxe_appended_initrd(channel, version).is_some(),
                affected,
                "{} {version}",
                channel.name()
            );
        }
    }
}
