//! What the reflection service knows: every served `.proto` file, which
//! file defines each symbol, and what each file imports. A file is always
//! answered together with every file it imports, transitively, as the
//! reflection protocol asks and as grpcio's and grpcurl's clients need to
//! resolve a method from reflection alone (`ward/v1/inventory.proto`
//! without `ward/v1/common.proto` is unusable).

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

/// One `.proto` file as served.
struct File {
    /// The encoded `FileDescriptorProto`.
    encoded: Vec<u8>,
    /// The files it imports, by name.
    imports: Vec<String>,
}

/// A question of the reflection protocol, the same in v1 and v1alpha.
pub(super) enum Query<'a> {
    /// `file_by_filename`.
    File(&'a str),
    /// `file_containing_symbol`: a package-qualified message, enum,
    /// service or method name.
    Symbol(&'a str),
    /// `file_containing_extension`: ward's files declare no extensions.
    Extension,
    /// `all_extension_numbers_of_type`: none, for every type.
    ExtensionNumbers,
    /// `list_services`.
    Services,
}

/// The reflection protocol's answers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Encoded files: the one asked for first, then what it imports.
    Files(Vec<Vec<u8>>),
    /// Fully-qualified names of the services served.
    Services(Vec<String>),
    /// No extension numbers (an empty list, not an error: grpcurl asks).
    NoExtensionNumbers,
    /// Not known here, in words.
    NotFound(String),
}

/// Every file of the descriptor sets it was made from, indexed.
pub(super) struct Catalog {
    files: HashMap<String, File>,
    symbols: HashMap<String, String>,
    services: Vec<String>,
}

impl Catalog {
    /// The files of the encoded descriptor `sets`, advertising `services`.
    pub fn new(sets: &[&[u8]], services: &[&str]) -> Result<Self, prost::DecodeError> {
        let mut catalog = Self {
            files: HashMap::new(),
            symbols: HashMap::new(),
            services: services.iter().map(|&name| name.to_owned()).collect(),
        };
        for set in sets {
            for file in FileDescriptorSet::decode(*set)?.file {
                catalog.add(file);
            }
        }
        Ok(catalog)
    }

    fn add(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_owned();
        let package = file.package();
        let mut symbols = Vec::new();
        for message in &file.message_type {
            message_symbols(package, message, &mut symbols);
        }
        for enumeration in &file.enum_type {
            symbols.push(qualified(package, enumeration.name()));
        }
        for service in &file.service {
            let service_name = qualified(package, service.name());
            for method in &service.method {
                symbols.push(format!("{service_name}.{}", method.name()));
            }
            symbols.push(service_name);
        }
        for symbol in symbols {
            self.symbols.insert(symbol, name.clone());
        }
        let imports = file.dependency.clone();
        let encoded = file.encode_to_vec();
        self.files.insert(name, File { encoded, imports });
    }

    pub fn answer(&self, query: Query<'_>) -> Answer {
        match query {
            Query::File(name) => self.with_imports(name),
            Query::Symbol(symbol) => match self.symbols.get(symbol.trim_start_matches('.')) {
                Some(file) => self.with_imports(file),
                None => Answer::NotFound(format!("no served file defines the symbol `{symbol}`")),
            },
            Query::Extension => {
                Answer::NotFound("ward's services declare no extensions".to_owned())
            }
            Query::ExtensionNumbers => Answer::NoExtensionNumbers,
            Query::Services => Answer::Services(self.services.clone()),
        }
    }

    /// File `name` first, then every file it imports, transitively, once.
    fn with_imports(&self, name: &str) -> Answer {
        if !self.files.contains_key(name) {
            return Answer::NotFound(format!("no served file is named `{name}`"));
        }
        let mut answered = Vec::new();
        let mut seen = HashSet::new();
        let mut waiting = vec![name];
        while let Some(next) = waiting.pop() {
            if !seen.insert(next) {
                continue;
            }
            // An import that is not served (none today) is left out: the
            // client names it when it asks for it.
            if let Some(file) = self.files.get(next) {
                answered.push(file.encoded.clone());
                waiting.extend(file.imports.iter().map(String::as_str));
            }
        }
        Answer::Files(answered)
    }
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

/// `message`'s name and those of the messages and enums nested in it.
fn message_symbols(scope: &str, message: &DescriptorProto, symbols: &mut Vec<String>) {
    let name = qualified(scope, message.name());
    for nested in &message.nested_type {
        message_symbols(&name, nested, symbols);
    }
    symbols.extend(
        message
            .enum_type
            .iter()
            .map(|enumeration: &EnumDescriptorProto| qualified(&name, enumeration.name())),
    );
    symbols.push(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(&[ward_proto::FILE_DESCRIPTOR_SET], &["ward.v1.Inventory"]).expect("sets")
    }

    fn names(answer: Answer) -> Vec<String> {
        let Answer::Files(files) = answer else {
            panic!("files expected: {answer:?}");
        };
        files
            .iter()
            .map(|bytes| {
                FileDescriptorProto::decode(bytes.as_slice())
                    .expect("a file")
                    .name()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_service_comes_with_the_files_it_imports() {
        let catalog = catalog();
        for symbol in [
            "ward.v1.Inventory",
            "ward.v1.Inventory.ListDevices",
            ".ward.v1.Inventory",
        ] {
            let files = names(catalog.answer(Query::Symbol(symbol)));
            assert_eq!(files[0], "ward/v1/inventory.proto", "{symbol}");
            assert!(
                files.contains(&"ward/v1/common.proto".to_owned()),
                "{symbol}: {files:?}"
            );
        }
        let common = names(catalog.answer(Query::File("ward/v1/common.proto")));
        assert_eq!(common, ["ward/v1/common.proto"]);
    }

    #[test]
    fn nested_types_are_found_and_unknown_names_are_named() {
        let catalog = catalog();
        assert_eq!(
            names(catalog.answer(Query::Symbol("ward.v1.DeviceState")))[0],
            "ward/v1/common.proto"
        );
        assert_eq!(
            catalog.answer(Query::Symbol("ward.v1.Nope")),
            Answer::NotFound("no served file defines the symbol `ward.v1.Nope`".into())
        );
    }
}
