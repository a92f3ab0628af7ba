//! Image references as Docker writes them: `[registry/]repository[:tag][@sha256:hex]`.
//! A first component with a `.` or `:` (or `localhost`) is a registry; otherwise the image
//! lives on Docker Hub, where one-component names are under `library/`.

use std::fmt;

pub(crate) const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API is not served from its name.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an image reference: {why}")]
pub struct ReferenceError {
    pub text: String,
    pub why: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |why: &str| ReferenceError {
            text: text.to_string(),
            why: why.to_string(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|why| fail(&why))?;
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last `:` that comes after the last `/` (a registry port does not).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
            if !valid {
                return Err(fail("a tag is 1-128 letters, digits, `_`, `.` or `-`"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if registry.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail("registry names are lower case"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(fail(
                    "repository path components are lower-case letters and digits, separated by `.`, `_`, `__` or `-`",
                ));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(fail("name a tag, a digest or both (`name:tag@sha256:...`)"));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The host the distribution API is on.
    pub(crate) fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Loopback registries speak plain HTTP, as Docker assumes for 127.0.0.0/8.
    pub(crate) fn api_base(&self) -> String {
        let host = self.api_host();
        let name = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let loopback = name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{}", self.repository)
    }

    /// The name `docker load` tags the image with (`repository:tag` as Docker shows it), if
    /// the reference has a tag.
    pub(crate) fn repo_tag(&self) -> Option<String> {
        let tag = self.tag.as_ref()?;
        Some(format!("{}:{tag}", self.familiar_name()))
    }

    /// `zookeeper` for `docker.io/library/zookeeper`, `quay.io/x/y` elsewhere.
    pub(crate) fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// `registry/repository[:tag]`: the reference without its digest.
    pub fn name(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{}/{}:{tag}", self.registry, self.repository),
            None => format!("{}/{}", self.registry, self.repository),
        }
    }

    /// The same image pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 lower-case hex digits: the only digest kato-image accepts.
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "digest `{digest}` is not `sha256:` and 64 lower-case hex digits"
        )),
    }
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separators = 0;
    for &b in bytes {
        if alnum(b) {
            separators = 0;
        } else if matches!(b, b'.' | b'_' | b'-') {
            separators += 1;
            if separators > 2 && b != b'-' {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_short_names() {
        let r = Reference::parse(&format!("zookeeper:3.9@{D}")).unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/zookeeper");
        assert_eq!(r.tag.as_deref(), Some("3.9"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.repo_tag().unwrap(), "zookeeper:3.9");
        assert_eq!(
            r.api_base(),
            "https://registry-1.docker.io/v2/library/zookeeper"
        );
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/zookeeper:3.9@{D}")
        );
    }

    #[test]
    fn registries_with_ports_and_loopback() {
        let r = Reference::parse("127.0.0.1:5000/kato/app:1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kato/app");
        assert_eq!(r.api_base(), "http://127.0.0.1:5000/v2/kato/app");
        assert_eq!(r.repo_tag().unwrap(), "127.0.0.1:5000/kato/app:1");
        let r = Reference::parse(&format!("quay.io/ceph/daemon@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.api_base(), "https://quay.io/v2/ceph/daemon");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "zookeeper",
            "Zookeeper:1",
            "zoo keeper:1",
            "zookeeper:",
            "zookeeper@sha256:abc",
            "zookeeper@md5:0123",
            "a//b:1",
            "-a:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
