//! The UCI lexer: text → raw sections. (Being written on the `config` branch.)
