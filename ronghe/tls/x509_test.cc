#include "ronghe/tls/x509.h"

#include <gtest/gtest.h>

namespace ronghe::tls {
namespace {

TEST(PkiTest, LeavesChainToTheirCaOnly) {
  auto ca = MakeCa("fraud-consortium");
  ASSERT_TRUE(ca.ok()) << ca.status().message();
  auto bank = MakeLeaf(*ca, {"fraud-consortium", "bank-north"});
  ASSERT_TRUE(bank.ok()) << bank.status().message();
  auto cn = VerifyLeaf(ca->cert_pem, bank->cert_pem, bank->key_pem);
  ASSERT_TRUE(cn.ok()) << cn.status().message();
  EXPECT_EQ(*cn, "bank-north");
  auto server =
      MakeLeaf(*ca, {"fraud-consortium", "coordinator", {"localhost"}, {"127.0.0.1"}, true});
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(*VerifyLeaf(ca->cert_pem, server->cert_pem), "coordinator");
  // Another consortium's CA does not vouch for this bank.
  auto other = MakeCa("other");
  auto r = VerifyLeaf(other->cert_pem, bank->cert_pem);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  // A key that is not the certificate's.
  auto w = VerifyLeaf(ca->cert_pem, bank->cert_pem, server->key_pem);
  EXPECT_FALSE(w.ok());
  EXPECT_FALSE(VerifyLeaf(ca->cert_pem, "garbage").ok());
  EXPECT_FALSE(MakeLeaf(*ca, {"fraud-consortium", "bad name/with slash"}).ok());
}

}  // namespace
}  // namespace ronghe::tls
