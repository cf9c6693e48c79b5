// The protocol v1 codec, both ways and with no I/O: one include for the
// files it is made of.
//
//   fields.h       tags, decimal numbers, the contract's limits
//   line_framer.h  bytes to lines (both sides)
//   requests.h     parse_request (server) and the encode_* functions (clients)
//   answers.h      the append_* formatters (server), parse_answer and the
//                  typed answer parsers (clients)
//   stats_json.h   STATS' JSON, read by clients
//   names.h        percent-encoding of names, the name rules
//   error_code.h   the ERR codes and their spelling
//
// The ACE dialect has its own codec (ace_codec.h). Everything here is pure
// functions and plain values: safe from any thread, one object per user.
#pragma once

#include "protocol/answers.h"
#include "protocol/error_code.h"
#include "protocol/fields.h"
#include "protocol/line_framer.h"
#include "protocol/names.h"
#include "protocol/requests.h"
#include "protocol/stats_json.h"
