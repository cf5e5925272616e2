using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

/// <summary>One line of the emulator's hosted checkout page.</summary>
internal sealed record CheckoutPageLine(string Description, long? Quantity, long Amount, bool Metered);

/// <summary>What the emulator's hosted checkout page shows.</summary>
internal sealed record CheckoutPageModel(
    string Id, string Status, string Currency, long AmountTotal, string? CustomerEmail, string? CancelUrl, long ExpiresAt, IReadOnlyList<CheckoutPageLine> Lines);

internal sealed partial class StripeBackend
{
    /// <summary>Stripe's default and longest session lifetime.</summary>
    private const long CheckoutLifetime = 24 * 3600;

    /// <summary>The shortest lifetime <c>expires_at</c> may ask for.</summary>
    private const long CheckoutMinLifetime = 30 * 60;

    /// <summary>The path of a session's hosted page under the emulator's root.</summary>
    public static string CheckoutPagePath(string sessionId) => $"{AdminEndpoints.Prefix}/checkout/{sessionId}";

    private JsonObject Render(CheckoutSession cs)
    {
        JsonObject? details = null;
        if (cs.Status == "complete" && cs.CustomerId is not null && Customers.TryGet(cs.CustomerId, out var customer))
        {
            details = new JsonObject
            {
                ["address"] = null,
                ["email"] = customer.Email ?? cs.CustomerEmail,
                ["name"] = customer.Name,
                ["phone"] = null,
                ["tax_exempt"] = "none",
                ["tax_ids"] = new JsonArray(),
            };
        }

        return new JsonObject
        {
            ["id"] = cs.Id,
            ["object"] = "checkout.session",
            ["after_expiration"] = null,
            ["allow_promotion_codes"] = null,
            ["amount_subtotal"] = cs.AmountTotal,
            ["amount_total"] = cs.AmountTotal,
            ["automatic_tax"] = new JsonObject { ["enabled"] = false, ["liability"] = null, ["status"] = null },
            ["billing_address_collection"] = null,
            ["cancel_url"] = cs.CancelUrl,
            ["client_reference_id"] = cs.ClientReferenceId,
            ["created"] = cs.Created,
            ["currency"] = cs.Currency,
            ["customer"] = cs.CustomerId,
            ["customer_creation"] = cs.CreatesCustomer ? "always" : null,
            ["customer_details"] = details,
            ["customer_email"] = cs.CustomerEmail,
            ["expires_at"] = cs.ExpiresAt,
            ["invoice"] = cs.InvoiceId,
            ["livemode"] = false,
            ["locale"] = null,
            ["metadata"] = Metadata(cs.Metadata),
            ["mode"] = cs.Mode,
            ["payment_intent"] = null,
            ["payment_method_collection"] = "always",
            ["payment_method_types"] = new JsonArray("card"),
            ["payment_status"] = cs.PaymentStatus,
            ["setup_intent"] = null,
            ["status"] = cs.Status,
            ["submit_type"] = null,
            ["subscription"] = cs.SubscriptionId,
            ["success_url"] = cs.SuccessUrl,
            ["total_details"] = new JsonObject { ["amount_discount"] = 0, ["amount_shipping"] = 0, ["amount_tax"] = 0 },
            ["ui_mode"] = "hosted",

            // Stripe serves the URL only while the session can still be paid.
            ["url"] = cs.Status == "open" ? cs.PageUrl : null,
        };
    }

    private JsonObject Render(CheckoutSession cs, CheckoutLineItem line)
    {
        var price = Catalog.Price(line.PriceId);
        return new JsonObject
        {
            ["id"] = line.Id,
            ["object"] = "item",
            ["amount_discount"] = 0,
            ["amount_subtotal"] = line.Amount,
            ["amount_tax"] = 0,
            ["amount_total"] = line.Amount,
            ["currency"] = cs.Currency,
            ["description"] = Catalog.ProductName(price),
            ["price"] = CatalogStore.Render(price),
            ["quantity"] = line.Quantity,
        };
    }

    /// <summary><c>POST /v1/checkout/sessions</c> (subscription mode). <paramref name="origin"/> is the emulator root the client called, for the session's <c>url</c>.</summary>
    public JsonObject CreateCheckoutSession(Params p, string origin)
    {
        p.AllowOnly("mode", "customer", "customer_email", "line_items", "success_url", "cancel_url", "client_reference_id",
            "metadata", "subscription_data", "expires_at");
        var mode = p.Enum("mode", "payment", "setup", "subscription");
        if (string.IsNullOrEmpty(mode))
        {
            throw StripeApiException.Missing("mode");
        }

        if (mode != "subscription")
        {
            throw StripeApiException.Invalid($"The emulator supports Checkout Sessions in subscription mode only, not '{mode}'.", "mode");
        }

        var customerId = NullIfEmpty(p.Str("customer"));
        var customerEmail = NullIfEmpty(p.Str("customer_email", 800));
        if (customerId is not null && customerEmail is not null)
        {
            throw StripeApiException.Invalid("You may only specify one of these parameters: customer, customer_email.", "customer_email");
        }

        var successUrl = CheckoutUrl(p, "success_url", required: true)!;
        var cancelUrl = CheckoutUrl(p, "cancel_url", required: false);
        var clientReferenceId = NullIfEmpty(p.Str("client_reference_id", 200));
        var lines = p.ObjArray("line_items");
        if (lines is null || lines.Count == 0)
        {
            throw StripeApiException.Missing("line_items");
        }

        var parsed = new List<(Params Params, string PriceId, long? Quantity)>();
        foreach (var it in lines)
        {
            it.AllowOnly("price", "quantity");
            var priceId = it.Required("price");
            var quantity = it.Long("quantity");
            if (quantity < 1)
            {
                throw StripeApiException.Invalid("Invalid quantity: must be at least 1", it.Name("quantity"));
            }

            parsed.Add((it, priceId, quantity));
        }

        var subscriptionMetadata = new Dictionary<string, string>(StringComparer.Ordinal);
        string? subscriptionDescription = null;
        if (p.Obj("subscription_data") is { } sd)
        {
            sd.AllowOnly("metadata", "description");
            MergeMetadata(subscriptionMetadata, sd);
            subscriptionDescription = NullIfEmpty(sd.Str("description", 500));
        }

        var now = Now;
        var expiresAt = p.Long("expires_at") ?? now + CheckoutLifetime;
        if (expiresAt < now + CheckoutMinLifetime || expiresAt > now + CheckoutLifetime)
        {
            throw StripeApiException.Invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours after the Checkout Session is created.", "expires_at");
        }

        lock (_gate)
        {
            ProcessDueLocked(now);
            if (customerId is not null)
            {
                CustomerParamOrThrow(customerId, "customer");
            }

            string? currency = null;
            var items = new List<CheckoutLineItem>();
            foreach (var (it, priceId, quantity) in parsed)
            {
                var price = Catalog.TryGetPrice(priceId, out var x)
                    ? x
                    : throw StripeApiException.Invalid($"No such price: '{priceId}'", it.Name("price"), "resource_missing");
                if (!price.Active)
                {
                    throw StripeApiException.Invalid($"The price specified ({priceId}) is inactive. This field only accepts active prices.", it.Name("price"));
                }

                if (!price.IsRecurring)
                {
                    // Stripe adds one-time prices to the first invoice; the emulator's subscriptions hold recurring prices only.
                    throw StripeApiException.Invalid($"The price specified ({priceId}) is not recurring. The emulator accepts only recurring prices in subscription mode.", it.Name("price"));
                }

                if (price.IsMetered && quantity is not null)
                {
                    throw StripeApiException.Invalid(
                        "Quantity should not be specified where usage_type is `metered`. Remove quantity from the line item.", it.Name("quantity"));
                }

                if (!price.IsMetered && quantity is null)
                {
                    throw StripeApiException.Missing(it.Name("quantity"));
                }

                if (currency is not null && price.Currency != currency)
                {
                    throw StripeApiException.Invalid("All line items must have the same currency.", it.Name("price"));
                }

                currency ??= price.Currency;
                items.Add(new CheckoutLineItem
                {
                    Id = NewId("li_"),
                    PriceId = priceId,
                    Quantity = quantity,
                    Amount = price.IsMetered ? 0 : BillingStore.PriceAmount(price, quantity ?? 1),
                });
            }

            var id = NewId("cs_test_", 58);
            var cs = new CheckoutSession
            {
                Id = id,
                Created = now,
                ExpiresAt = expiresAt,
                CustomerId = customerId,
                CustomerEmail = customerEmail,
                CreatesCustomer = customerId is null,
                Currency = currency!,
                SuccessUrl = successUrl,
                CancelUrl = cancelUrl,
                ClientReferenceId = clientReferenceId,
                PageUrl = origin.TrimEnd('/') + CheckoutPagePath(id),
                SubscriptionMetadata = subscriptionMetadata,
                SubscriptionDescription = subscriptionDescription,
            };
            cs.LineItems.AddRange(items);
            MergeMetadata(cs.Metadata, p);
            _checkout.Add(cs);
            RecomputeNextDue();
            return Render(cs);
        }
    }

    private static string? CheckoutUrl(Params p, string key, bool required)
    {
        var url = required ? p.Required(key, 5000) : NullIfEmpty(p.Str(key, 5000));
        if (url is null)
        {
            return null;
        }

        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw StripeApiException.Invalid($"Not a valid URL: {url}", key, "url_invalid");
        }

        return url;
    }

    /// <summary>A customer named in a create parameter: Stripe answers 400 <c>resource_missing</c> (not 404) when it does not exist.</summary>
    private Customer CustomerParamOrThrow(string id, string param) =>
        Customers.TryGet(id, out var c) && !c.Deleted
            ? c
            : throw StripeApiException.Invalid($"No such customer: '{id}'", param, "resource_missing");

    private CheckoutSession CheckoutOrThrow(string id) =>
        _checkout.TryGetValue(id, out var cs) ? cs : throw StripeApiException.NoSuch("checkout.session", id);

    public JsonObject GetCheckoutSession(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            ProcessDueLocked(Now);
            return Render(CheckoutOrThrow(id));
        }
    }

    public JsonObject ListCheckoutSessions(Params p)
    {
        p.AllowOnly("customer", "status", "subscription", "limit", "starting_after", "ending_before");
        var customer = p.Str("customer");
        var subscription = p.Str("subscription");
        var status = p.Enum("status", "open", "complete", "expired");
        lock (_gate)
        {
            ProcessDueLocked(Now);
            var items = NewestFirst(_checkout, cs =>
                (string.IsNullOrEmpty(customer) || cs.CustomerId == customer)
                && (string.IsNullOrEmpty(subscription) || cs.SubscriptionId == subscription)
                && (string.IsNullOrEmpty(status) || cs.Status == status));
            return ListOf(items, cs => cs.Id, Render, p, "/v1/checkout/sessions");
        }
    }

    public JsonObject ListCheckoutLineItems(string id, Params p)
    {
        p.AllowOnly("limit", "starting_after", "ending_before");
        lock (_gate)
        {
            var cs = CheckoutOrThrow(id);
            return ListOf(cs.LineItems, l => l.Id, l => Render(cs, l), p, $"/v1/checkout/sessions/{id}/line_items");
        }
    }

    /// <summary><c>POST /v1/checkout/sessions/{id}/expire</c>: only an open session can be expired.</summary>
    public JsonObject ExpireCheckoutSession(string id, Params p)
    {
        p.AllowOnly();
        var now = Now;
        lock (_gate)
        {
            ProcessDueLocked(now);
            var cs = CheckoutOrThrow(id);
            if (cs.Status != "open")
            {
                throw StripeApiException.Invalid(
                    $"Only Checkout Sessions with a status of `open` can be expired. This Checkout Session has a status of `{cs.Status}`.");
            }

            ExpireLocked(cs, now);
            RecomputeNextDue();
            return Render(cs);
        }
    }

    /// <summary>Expires an open session and emits <c>checkout.session.expired</c>. Caller holds the lock.</summary>
    private void ExpireLocked(CheckoutSession cs, long at)
    {
        cs.Status = "expired";
        Emit("checkout.session.expired", Render(cs), at);
    }

    /// <summary>
    /// The customer paid: creates the subscription exactly as <c>POST /v1/subscriptions</c> does (items from the line
    /// items, metadata from <c>subscription_data[metadata]</c>), completes the session and emits
    /// <c>checkout.session.completed</c>. Only an open session can be completed.
    /// </summary>
    public CheckoutCompletion CompleteCheckoutSession(string id)
    {
        var now = Now;
        lock (_gate)
        {
            ProcessDueLocked(now);
            var cs = CheckoutOrThrow(id);
            if (cs.Status != "open")
            {
                throw StripeApiException.Invalid($"This Checkout Session is {cs.Status}; only an open session can be completed.");
            }

            Customer customer;
            if (cs.CustomerId is { } customerId)
            {
                customer = CustomerParamOrThrow(customerId, "customer");
            }
            else
            {
                // Subscription mode always creates a customer when none was given.
                customer = new Customer { Id = NewId("cus_", 14), Created = now, Email = cs.CustomerEmail };
                Customers.Add(customer);
            }

            var s = new Subscription
            {
                Id = NewId("sub_", 14),
                Created = now,
                CustomerId = customer.Id,
                StartDate = now,
                BillingCycleAnchor = now,
                Currency = cs.Currency,
                Description = cs.SubscriptionDescription,
                Metadata = new Dictionary<string, string>(cs.SubscriptionMetadata, StringComparer.Ordinal),
            };
            foreach (var line in cs.LineItems)
            {
                s.Items.Add(BillingStore.BuildItem(Catalog.Price(line.PriceId), line.Quantity, s, now, now));
            }

            Billing.StartSubscriptionLocked(s, now);
            cs.CustomerId = customer.Id;
            cs.Status = "complete";
            cs.PaymentStatus = cs.AmountTotal > 0 ? "paid" : "no_payment_required";
            cs.SubscriptionId = s.Id;
            cs.InvoiceId = s.LatestInvoiceId;
            cs.CompletedAt = now;
            Emit("checkout.session.completed", Render(cs), now);
            RecomputeNextDue();
            return new CheckoutCompletion(cs.Id, s.Id, customer.Id, new Uri(SuccessRedirect(cs)));
        }
    }

    /// <summary>The success URL with Stripe's <c>{CHECKOUT_SESSION_ID}</c> template variable filled in.</summary>
    private static string SuccessRedirect(CheckoutSession cs) =>
        cs.SuccessUrl.Replace("{CHECKOUT_SESSION_ID}", cs.Id, StringComparison.Ordinal);

    /// <summary>What the hosted page shows, or <see langword="null"/> for an unknown session.</summary>
    public CheckoutPageModel? CheckoutPage(string id)
    {
        lock (_gate)
        {
            ProcessDueLocked(Now);
            if (!_checkout.TryGetValue(id, out var cs))
            {
                return null;
            }

            var lines = cs.LineItems.Select(l =>
            {
                var price = Catalog.Price(l.PriceId);
                var name = Catalog.ProductName(price);
                return new CheckoutPageLine(name, l.Quantity, l.Amount, price.IsMetered);
            }).ToList();
            var email = cs.CustomerEmail ?? (cs.CustomerId is { } c && Customers.TryGet(c, out var customer) ? customer.Email : null);
            return new CheckoutPageModel(cs.Id, cs.Status, cs.Currency, cs.AmountTotal, email, cs.CancelUrl, cs.ExpiresAt, lines);
        }
    }
}
