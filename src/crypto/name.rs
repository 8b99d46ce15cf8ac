//! Distinguished names as text (RFC 5280 §4.1.2.4), for [`super::CertInfo`] and
//! [`super::CrlInfo`].

/// A distinguished name as text, exactly as x509-parser's `X509Name::to_string` writes it
/// (RDNs joined by ", ", multi-valued RDNs by " + ", `CN=value`; a value that is no string
/// type as upper-case hex) for every name attribute (RFC 5280 §4.1.2.4, X.520), without
/// x509-parser's OID registry: that registry is a table of every OID it knows, built at run
/// time, about 25 KB of code on mipsel for the names of the few attributes names carry.
/// An attribute type not in [`NAME_ATTRS`] is written as `OID(1.2.3)`.
pub(super) fn name_to_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::der_parser::asn1_rs::{Any, BmpString, Tag};
    let value = |v: &Any<'_>| match v.tag() {
        Tag::NumericString
        | Tag::VisibleString
        | Tag::PrintableString
        | Tag::GeneralString
        | Tag::ObjectDescriptor
        | Tag::GraphicString
        | Tag::T61String
        | Tag::VideotexString
        | Tag::Utf8String
        | Tag::Ia5String => std::str::from_utf8(v.data).ok().map(str::to_owned),
        Tag::BmpString => BmpString::try_from(v.clone()).ok().map(|s| s.string()),
        _ => Some(super::hex(v.data).to_uppercase()),
    };
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            let oid = attr.attr_type().to_id_string();
            match NAME_ATTRS.iter().find(|(o, _)| *o == oid) {
                Some((_, short)) => out.push_str(short),
                None => out.push_str(&format!("OID({oid})")),
            }
            out.push('=');
            match value(attr.attr_value()) {
                Some(v) => out.push_str(&v),
                // A string value that does not decode: x509-parser's text for the whole name.
                None => return "<X509Error: Invalid X.509 name>".into(),
            }
        }
    }
    out
}

/// Name attribute types and the short names x509-parser writes for them (its abbreviations
/// for CN, C, L, ST, O, OU, DC and Email; its OID registry's short names for the rest of X.520
/// §6 and the other attributes that occur in names).
const NAME_ATTRS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "Email"),
    ("0.9.2342.19200300.100.1.1", "uid"),
    ("1.3.6.1.4.1.311.60.2.1.1", "msJurisdictionLocality"),
    ("1.3.6.1.4.1.311.60.2.1.2", "msJurisdictionStateOrProvince"),
    ("1.3.6.1.4.1.311.60.2.1.3", "msJurisdictionCountry"),
    ("1.2.840.113549.1.9.2", "unstructuredName"),
    ("2.5.4.0", "objectClass"),
    ("2.5.4.1", "aliasedEntryName"),
    ("2.5.4.2", "knowledgeInformation"),
    ("2.5.4.4", "surname"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.9", "streetAddress"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.14", "searchGuide"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.16", "postalAddress"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "givenName"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.45", "uniqueIdentifier"),
    ("2.5.4.46", "dnQualifier"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name attribute type, a BMPString, a value of no string type (UniversalString is
    /// not one x509-parser decodes: hex) and an OID outside the table: the same text as
    /// x509-parser's own `to_string` (which the binary no longer links, see [`name_to_string`]).
    #[test]
    fn names_read_as_x509_parser_writes_them() {
        use rcgen::{DnType, DnValue};
        let mut dn = rcgen::DistinguishedName::new();
        // Every X.520 attribute type 2.5.4.0-46 and the others names carry, listed here rather
        // than taken from NAME_ATTRS, so an entry missing from the table fails the test.
        let mut oids: Vec<Vec<u64>> = (0..=46).map(|n| vec![2, 5, 4, n]).collect();
        oids.push(vec![0, 9, 2342, 19200300, 100, 1, 1]);
        oids.push(vec![0, 9, 2342, 19200300, 100, 1, 25]);
        oids.push(vec![1, 2, 840, 113549, 1, 9, 1]);
        oids.push(vec![1, 2, 840, 113549, 1, 9, 2]);
        oids.extend((1..=3).map(|n| vec![1, 3, 6, 1, 4, 1, 311, 60, 2, 1, n]));
        for arcs in oids {
            let v = format!("v-{}", arcs.len());
            dn.push(DnType::CustomDnType(arcs), v);
        }
        dn.push(DnType::CustomDnType(vec![1, 2, 3, 4]), "unknown");
        dn.push(
            DnType::CustomDnType(vec![1, 2, 3, 5]),
            DnValue::UniversalString("A".try_into().unwrap()),
        );
        dn.push(
            DnType::OrganizationalUnitName,
            DnValue::BmpString("Ünit".try_into().unwrap()),
        );
        let key = super::super::PrivateKey::generate(super::super::KeyType::Ec256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["n.test".into()]).unwrap();
        params.distinguished_name = dn;
        let der = params.self_signed(&key.to_rcgen()).unwrap().der().to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ours = name_to_string(cert.subject());
        assert_eq!(ours, cert.subject().to_string());
        assert!(
            ours.contains(", CN=v-4, surname=v-4, serialNumber=v-4, C=v-4, "),
            "{ours}"
        );
        assert!(ours.contains("OID(1.2.3.4)=unknown"), "{ours}");
        assert!(ours.contains("OID(1.2.3.5)=00000041"), "{ours}");
        assert!(ours.ends_with("OU=Ünit"), "{ours}");
        assert_eq!(name_to_string(cert.issuer()), cert.issuer().to_string());
    }
}
