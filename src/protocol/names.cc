// Semaphore names on the wire: percent-decoding, the validity rules, and the
// two encodings (the server's minimal one for answers and the status file, the
// client's wider one for requests). The codec calls decode_name for every name
// field and the LIST prefix; the server and the client library call the
// encoders. Everything here works on bytes: a name is UTF-8 only because
// check_name says so.
#include "protocol/names.h"

#include <cstdint>
#include <cstring>

namespace netsem::protocol {
namespace {

constexpr char kHexDigits[] = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// C0 controls and DEL; the C1 controls are two-byte sequences, which
// walk_utf8 refuses.
bool is_control(unsigned char byte) {
  return byte < 0x20 || byte == 0x7f;
}

// The one UTF-8 walk. `min_after_c2` is 0x80 to accept U+0080..U+009F, or
// 0xA0 to refuse them: they are the C1 controls (Unicode category Cc like
// the C0 controls; U+0085 is a line break to some readers), C2 80..C2 9F.
bool walk_utf8(std::string_view text, unsigned char min_after_c2) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* const end = p + text.size();
  while (p < end) {
    const unsigned char lead = *p;
    if (lead < 0x80) {
      ++p;
      continue;
    }
    std::size_t length = 0;
    // The bounds on the second byte are what rule out overlong forms,
    // surrogates (ED A0..BF) and code points above U+10FFFF (F4 90.. and F5..).
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
      if (lead == 0xc2) second_min = min_after_c2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) second_min = 0xa0;
      if (lead == 0xed) second_max = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) second_min = 0x90;
      if (lead == 0xf4) second_max = 0x8f;
    } else {
      return false;  // a continuation byte, C0/C1 (always overlong) or F5..FF
    }
    if (static_cast<std::size_t>(end - p) < length) return false;
    if (p[1] < second_min || p[1] > second_max) return false;
    for (std::size_t k = 2; k < length; ++k) {
      if (p[k] < 0x80 || p[k] > 0xbf) return false;
    }
    p += length;
  }
  return true;
}

}  // namespace

ErrorCode decode_name(std::string_view field, std::string& out) {
  out.clear();
  // A name is never longer than its field, so one reservation covers the
  // loop; reserve() keeps the capacity a reused `out` already has.
  out.reserve(field.size());
  // Runs between escapes are copied whole: most names have no `%` at all.
  while (!field.empty()) {
    const auto* escape = static_cast<const char*>(std::memchr(field.data(), '%', field.size()));
    const std::size_t run = escape != nullptr ? static_cast<std::size_t>(escape - field.data()) : field.size();
    out.append(field.data(), run);
    field.remove_prefix(run);
    if (field.empty()) break;
    if (field.size() < 3) return ErrorCode::kBadName;  // `%` needs two digits after it
    const int high = hex_value(field[1]);
    const int low = hex_value(field[2]);
    if (high < 0 || low < 0) return ErrorCode::kBadName;
    out.push_back(static_cast<char>(high * 16 + low));
    field.remove_prefix(3);
  }
  return check_name(out);
}

ErrorCode check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return ErrorCode::kBadName;
  if (name.front() == '$') return ErrorCode::kBadName;
  bool ascii = true;
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (is_control(byte)) return ErrorCode::kBadName;
    ascii = ascii && byte < 0x80;
  }
  // Printable ASCII is valid UTF-8 without C1 controls: only other names
  // need the full check.
  if (ascii) return ErrorCode::kNone;
  return walk_utf8(name, 0xa0) ? ErrorCode::kNone : ErrorCode::kBadName;
}

void append_encoded_name(std::string& out, std::string_view name) {
  for (const char c : name) {
    if (c == '%') {
      out.append("%25");
    } else if (c == ' ') {
      out.append("%20");
    } else {
      out.push_back(c);
    }
  }
}

void append_request_name(std::string& out, std::string_view name) {
  // Anything the server would split on, strip, or refuse as a raw byte in a
  // field goes encoded; the server decodes before it checks, so the name
  // arrives intact (and is then judged by check_name like any other).
  const auto raw = [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return c != '%' && byte >= 0x21 && byte != 0x7f;
  };
  // Most names need no escape: they go in one append.
  while (!name.empty()) {
    std::size_t run = 0;
    while (run < name.size() && raw(name[run])) ++run;
    out.append(name.data(), run);
    if (run == name.size()) break;
    const auto byte = static_cast<unsigned char>(name[run]);
    out.push_back('%');
    out.push_back(kHexDigits[byte >> 4]);
    out.push_back(kHexDigits[byte & 0x0f]);
    name.remove_prefix(run + 1);
  }
}

std::string encode_name_for_request(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  append_request_name(out, name);
  return out;
}

bool is_valid_utf8(std::string_view text) {
  return walk_utf8(text, 0x80);
}

}  // namespace netsem::protocol
