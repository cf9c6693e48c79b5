// The server configurations the documentation shows are ones netsemd reads:
// every ```ini block of README.md and docs/*.md made of server sections
// ([server], [semaphores], [cluster], ...) parses with parse_server_config,
// as an operator who copies it would find. Blocks of other files (a systemd
// drop-in's [Service], a tokens file, a client's [client]) are not server
// configurations and are skipped. An inline `# comment` after a value, which
// netsemd reads as part of the value, is what this caught (newuser23).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"

namespace netsem::server {
namespace {

struct Block {
  std::string file;
  int line = 0;  // of the opening fence
  std::string text;
};

std::vector<Block> ini_blocks(const std::filesystem::path& file) {
  std::vector<Block> blocks;
  std::ifstream in(file);
  std::string line;
  int number = 0;
  Block* open = nullptr;
  while (std::getline(in, line)) {
    ++number;
    if (open == nullptr && line.rfind("```ini", 0) == 0) {
      blocks.push_back({file.filename().string(), number, ""});
      open = &blocks.back();
    } else if (open != nullptr && line.rfind("```", 0) == 0) {
      open = nullptr;
    } else if (open != nullptr) {
      open->text += line + "\n";
    }
  }
  return blocks;
}

bool is_server_configuration(const std::string& text) {
  for (const char* other : {"[Service]", "[Unit]", "[tokens]", "[client]"}) {
    if (text.find(other) != std::string::npos) return false;
  }
  return true;
}

TEST(DocsConfig, EveryServerConfigurationShownInTheDocsParses) {
  std::vector<std::filesystem::path> files{NETSEM_SOURCE_DIR "/README.md"};
  for (const auto& entry : std::filesystem::directory_iterator(NETSEM_SOURCE_DIR "/docs")) {
    if (entry.path().extension() == ".md") files.push_back(entry.path());
  }
  int checked = 0;
  for (const auto& file : files) {
    for (const Block& block : ini_blocks(file)) {
      if (!is_server_configuration(block.text)) continue;
      ++checked;
      const auto config = parse_server_config(block.text, block.file);
      EXPECT_TRUE(config) << block.file << ":" << block.line << ": the block does not parse:\n"
                          << config.status().to_string() << "\n"
                          << block.text;
    }
  }
  // replication.md's three-host example and its [cluster] section at least.
  EXPECT_GE(checked, 2);
}

}  // namespace
}  // namespace netsem::server
