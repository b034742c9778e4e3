// The hub's pages as a person sees them: `ronghe hub serve` on a hub with a certified and an
// uncertified model, rendered by headless Chromium (Debian's `chromium`; `scripts/setup.sh
// browser` installs it), and the rendered DOM read back: the listing's names, versions, badges and
// metrics, the model page's card turned into HTML, and a card's script and event handler shown as
// text, never run. Label `browser`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "ronghe/cli/test_util.h"

namespace ronghe::testing {
namespace {

namespace fs = std::filesystem;

void Spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string Chromium() {
  const char* env = std::getenv("RONGHE_CHROMIUM");
  if (env && *env) return env;
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// The DOM Chromium builds from `url` after parsing and running whatever the page would run.
std::string RenderedDom(const std::string& chromium, const std::string& profile,
                        const std::string& url) {
  const std::string cmd = chromium +
                          " --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "
                          "--no-first-run --user-data-dir=" +
                          profile + " --dump-dom '" + url + "' 2>/dev/null";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Text as displayed: tags dropped, entities decoded, whitespace runs folded to one space.
std::string Text(const std::string& html) {
  std::string t = std::regex_replace(html, std::regex("<[^>]*>"), " ");
  for (auto [from, to] : {std::pair<const char*, const char*>{"&lt;", "<"},
                          {"&gt;", ">"},
                          {"&quot;", "\""},
                          {"&#39;", "'"},
                          {"&amp;", "&"}}) {
    t = std::regex_replace(t, std::regex(from), to);
  }
  return std::regex_replace(t, std::regex("\\s+"), " ");
}

// The text of the listing's table row that names `model`.
std::string RowOf(const std::string& dom, const std::string& model) {
  std::smatch m;
  std::string rest = dom;
  while (std::regex_search(rest, m, std::regex("<tr>([\\s\\S]*?)</tr>"))) {
    if (m[1].str().find(">" + model + "<") != std::string::npos) return Text(m[1].str());
    rest = m.suffix();
  }
  return "";
}

TEST(HubBrowserTest, ListingAndModelPageRenderInChromiumWithTheCardEscaped) {
  const std::string chromium = Chromium();
  ASSERT_FALSE(chromium.empty())
      << "no chromium: `scripts/setup.sh browser` installs Debian's (or set RONGHE_CHROMIUM)";
  const std::string home = FreshHome("hub-browser");
  const std::string hub = home + "/hub", keys = home + "/keys";
  const std::string model = SourcePath("examples/serving/repo/fraud/1/model.rhm");
  auto run = [&](const std::vector<std::string>& args) { return RunRonghe(home, args); };
  ASSERT_EQ(run({"hub", "keygen", "--out", keys + "/root"}).exit_code, 0);
  ASSERT_EQ(run({"hub", "init", "--hub", hub, "--root-key", keys + "/root/hub.key"}).exit_code, 0);
  Spit(home + "/card.md",
       "# Fraud detector\nLicense: Apache-2.0\n\nFive banks, one model.\n\n## Metrics\n"
       "- roc_auc: 0.7276\n\n<script>document.title='owned'</script>\n"
       "<img src=x onerror=\"document.body.setAttribute('data-owned','1')\">\n");
  Spit(home + "/plain.md", "# Plain\nNo licence stated.\n");
  for (const auto& [name, card] : {std::pair<std::string, std::string>{"fraud-detector", "card.md"},
                                   {"plain-model", "plain.md"}}) {
    auto r = run({"hub", "publish", "--hub", hub, "--model", model, "--name", name, "--version",
                  "1.0.0", "--card", home + "/" + card, "--key", keys + "/root/hub.key"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  auto r = run({"hub", "certify", "--hub", hub, "fraud-detector", "--key", keys + "/root/hub.key"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  pid_t server = SpawnRonghe(
      home, {"hub", "serve", "--dir", hub, "--host", "127.0.0.1", "--http", "0"}, "hub-serve");
  const int port = WaitForPort(server, home + "/hub-serve.stdout");
  ASSERT_GT(port, 0) << Slurp(home + "/hub-serve.stderr");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);

  const std::string index = RenderedDom(chromium, home + "/chromium", url + "/");
  ASSERT_NE(index.find("<title>ronghe hub</title>"), std::string::npos) << index;
  const std::string fraud = RowOf(index, "fraud-detector");
  EXPECT_NE(fraud.find("1.0.0"), std::string::npos) << fraud;
  EXPECT_NE(fraud.find(" certified"), std::string::npos) << fraud;
  EXPECT_EQ(fraud.find("not certified"), std::string::npos) << fraud;
  EXPECT_NE(fraud.find("roc_auc 0.7"), std::string::npos) << fraud;
  const std::string plain = RowOf(index, "plain-model");
  EXPECT_NE(plain.find("not certified"), std::string::npos) << plain;
  EXPECT_NE(Text(index).find("2 model(s)"), std::string::npos);

  const std::string page =
      RenderedDom(chromium, home + "/chromium", url + "/models/fraud-detector");
  ASSERT_NE(page.find("<title>fraud-detector - ronghe hub</title>"), std::string::npos)
      << "the card's script ran, or the page did not render:\n"
      << page;
  EXPECT_FALSE(std::regex_search(page, std::regex("<body[^>]*data-owned")))
      << "the card's event handler ran:\n"
      << page;
  EXPECT_EQ(page.find("<img"), std::string::npos) << "the card's markup became an element";
  EXPECT_TRUE(std::regex_search(page, std::regex("<h1>\\s*Fraud detector\\s*</h1>"))) << page;
  EXPECT_TRUE(std::regex_search(page, std::regex("<li>\\s*roc_auc: 0.7276\\s*</li>"))) << page;
  const std::string text = Text(page);
  EXPECT_NE(text.find("Five banks, one model."), std::string::npos) << text;
  EXPECT_NE(text.find("<script>document.title='owned'</script>"), std::string::npos) << text;
  EXPECT_NE(text.find("fraud-detector 1.0.0"), std::string::npos) << text;
  EXPECT_NE(text.find("certified"), std::string::npos) << text;

  ::kill(server, SIGTERM);
  EXPECT_EQ(WaitForExit(server, 30), 0);
}

}  // namespace
}  // namespace ronghe::testing
