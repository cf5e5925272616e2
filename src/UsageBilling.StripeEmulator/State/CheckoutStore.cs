using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

/// <summary>One line of the emulator's hosted checkout page.</summary>
internal sealed record CheckoutPageLine(string Description, long? Quantity, long Amount, bool Metered);

/// <summary>What the emulator's hosted checkout page shows.</summary>
internal sealed record CheckoutPageModel(
    string Id, string Status, string Currency, long AmountTotal, string? CustomerEmail, string? CancelUrl, long ExpiresAt, IReadOnlyList<CheckoutPageLine> Lines);

/// <summary>
/// The Checkout store: <c>/v1/checkout/sessions</c> in subscription mode, their expiry, the hosted page and its
/// completion (which starts the subscription through <see cref="BillingStore"/>).
/// </summary>
/// <remarks>
/// Guarded by <see cref="StripeBackend"/>'s one lock, like every store (see <see cref="WebhookStore"/>); completing a
/// session (a customer, a subscription, its first invoice and their events) runs under it from start to end. As in
/// <see cref="BillingStore"/>, each operation first runs the backend's due work and has it recompute when work is next due.
/// </remarks>
internal sealed class CheckoutStore(
    Lock gate,
    Func<long> now,
    CustomerStore customers,
    CatalogStore catalog,
    BillingStore billing,
    WebhookStore webhooks,
    Action<long> processDue,
    Action recomputeNextDue)
{
    /// <summary>Stripe's default and longest session lifetime.</summary>
    private const long CheckoutLifetime = 24 * 3600;

    /// <summary>The shortest lifetime <c>expires_at</c> may ask for.</summary>
    private const long CheckoutMinLifetime = 30 * 60;

    private readonly Lock _gate = gate;
    private readonly Func<long> _now = now;
    private readonly CustomerStore _customers = customers;
    private readonly CatalogStore _catalog = catalog;
    private readonly BillingStore _billing = billing;
    private readonly WebhookStore _webhooks = webhooks;
    private readonly Action<long> _processDue = processDue;
    private readonly Action _recomputeNextDue = recomputeNextDue;
    private readonly Table<CheckoutSession> _sessions = new(x => x.Id);

    /// <summary>Every session in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<CheckoutSession> Sessions => _sessions;

    /// <summary>Replaces the contents with the state file's. Caller holds the lock.</summary>
    public void Load(IEnumerable<CheckoutSession> sessions) => _sessions.Load(sessions);

    /// <summary>Forgets every session. Caller holds the lock.</summary>
    public void Clear() => _sessions.Clear();

    /// <summary>The open session due to expire first, at or before <paramref name="now"/>. Caller holds the lock.</summary>
    public CheckoutSession? FirstExpiry(long now)
    {
        CheckoutSession? dueSession = null;
        foreach (var cs in _sessions)
        {
            if (cs.Status == "open" && cs.ExpiresAt <= now && (dueSession is null || cs.ExpiresAt < dueSession.ExpiresAt))
            {
                dueSession = cs;
            }
        }

        return dueSession;
    }

    /// <summary>When an open session expires next (<see cref="long.MaxValue"/> when never). Caller holds the lock.</summary>
    public long NextDue()
    {
        var next = long.MaxValue;
        foreach (var cs in _sessions)
        {
            if (cs.Status == "open")
            {
                next = Math.Min(next, cs.ExpiresAt);
            }
        }

        return next;
    }

    /// <summary>The path of a session's hosted page under the emulator's root.</summary>
    public static string CheckoutPagePath(string sessionId) => $"{AdminEndpoints.Prefix}/checkout/{sessionId}";

    private JsonObject Render(CheckoutSession cs)
    {
        JsonObject? details = null;
        if (cs.Status == "complete" && cs.CustomerId is not null && _customers.TryGet(cs.CustomerId, out var customer))
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
            ["metadata"] = StripeBackend.Metadata(cs.Metadata),
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
        var price = _catalog.Price(line.PriceId);
        return new JsonObject
        {
            ["id"] = line.Id,
            ["object"] = "item",
            ["amount_discount"] = 0,
            ["amount_subtotal"] = line.Amount,
            ["amount_tax"] = 0,
            ["amount_total"] = line.Amount,
            ["currency"] = cs.Currency,
            ["description"] = _catalog.ProductName(price),
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

        var customerId = StripeBackend.NullIfEmpty(p.Str("customer"));
        var customerEmail = StripeBackend.NullIfEmpty(p.Str("customer_email", 800));
        if (customerId is not null && customerEmail is not null)
        {
            throw StripeApiException.Invalid("You may only specify one of these parameters: customer, customer_email.", "customer_email");
        }

        var successUrl = CheckoutUrl(p, "success_url", required: true)!;
        var cancelUrl = CheckoutUrl(p, "cancel_url", required: false);
        var clientReferenceId = StripeBackend.NullIfEmpty(p.Str("client_reference_id", 200));
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
            StripeBackend.MergeMetadata(subscriptionMetadata, sd);
            subscriptionDescription = StripeBackend.NullIfEmpty(sd.Str("description", 500));
        }

        var now = _now();
        var expiresAt = p.Long("expires_at") ?? now + CheckoutLifetime;
        if (expiresAt < now + CheckoutMinLifetime || expiresAt > now + CheckoutLifetime)
        {
            throw StripeApiException.Invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours after the Checkout Session is created.", "expires_at");
        }

        lock (_gate)
        {
            _processDue(now);
            if (customerId is not null)
            {
                CustomerParamOrThrow(customerId, "customer");
            }

            string? currency = null;
            var items = new List<CheckoutLineItem>();
            foreach (var (it, priceId, quantity) in parsed)
            {
                var price = _catalog.TryGetPrice(priceId, out var x)
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
                    Id = StripeBackend.NewId("li_"),
                    PriceId = priceId,
                    Quantity = quantity,
                    Amount = price.IsMetered ? 0 : BillingStore.PriceAmount(price, quantity ?? 1),
                });
            }

            var id = StripeBackend.NewId("cs_test_", 58);
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
            StripeBackend.MergeMetadata(cs.Metadata, p);
            _sessions.Add(cs);
            _recomputeNextDue();
            return Render(cs);
        }
    }

    private static string? CheckoutUrl(Params p, string key, bool required)
    {
        var url = required ? p.Required(key, 5000) : StripeBackend.NullIfEmpty(p.Str(key, 5000));
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
        _customers.TryGet(id, out var c) && !c.Deleted
            ? c
            : throw StripeApiException.Invalid($"No such customer: '{id}'", param, "resource_missing");

    private CheckoutSession CheckoutOrThrow(string id) =>
        _sessions.TryGetValue(id, out var cs) ? cs : throw StripeApiException.NoSuch("checkout.session", id);

    public JsonObject GetCheckoutSession(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            _processDue(_now());
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
            _processDue(_now());
            var items = StripeBackend.NewestFirst(_sessions, cs =>
                (string.IsNullOrEmpty(customer) || cs.CustomerId == customer)
                && (string.IsNullOrEmpty(subscription) || cs.SubscriptionId == subscription)
                && (string.IsNullOrEmpty(status) || cs.Status == status));
            return StripeBackend.ListOf(items, cs => cs.Id, Render, p, "/v1/checkout/sessions");
        }
    }

    public JsonObject ListCheckoutLineItems(string id, Params p)
    {
        p.AllowOnly("limit", "starting_after", "ending_before");
        lock (_gate)
        {
            var cs = CheckoutOrThrow(id);
            return StripeBackend.ListOf(cs.LineItems, l => l.Id, l => Render(cs, l), p, $"/v1/checkout/sessions/{id}/line_items");
        }
    }

    /// <summary><c>POST /v1/checkout/sessions/{id}/expire</c>: only an open session can be expired.</summary>
    public JsonObject ExpireCheckoutSession(string id, Params p)
    {
        p.AllowOnly();
        var now = _now();
        lock (_gate)
        {
            _processDue(now);
            var cs = CheckoutOrThrow(id);
            if (cs.Status != "open")
            {
                throw StripeApiException.Invalid(
                    $"Only Checkout Sessions with a status of `open` can be expired. This Checkout Session has a status of `{cs.Status}`.");
            }

            ExpireLocked(cs, now);
            _recomputeNextDue();
            return Render(cs);
        }
    }

    /// <summary>Expires an open session and emits <c>checkout.session.expired</c>. Caller holds the lock.</summary>
    public void ExpireLocked(CheckoutSession cs, long at)
    {
        cs.Status = "expired";
        _webhooks.Emit("checkout.session.expired", Render(cs), at);
    }

    /// <summary>
    /// The customer paid: creates the subscription exactly as <c>POST /v1/subscriptions</c> does (items from the line
    /// items, metadata from <c>subscription_data[metadata]</c>), completes the session and emits
    /// <c>checkout.session.completed</c>. Only an open session can be completed.
    /// </summary>
    public CheckoutCompletion CompleteCheckoutSession(string id)
    {
        var now = _now();
        lock (_gate)
        {
            _processDue(now);
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
                customer = new Customer { Id = StripeBackend.NewId("cus_", 14), Created = now, Email = cs.CustomerEmail };
                _customers.Add(customer);
            }

            var s = new Subscription
            {
                Id = StripeBackend.NewId("sub_", 14),
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
                s.Items.Add(BillingStore.BuildItem(_catalog.Price(line.PriceId), line.Quantity, s, now, now));
            }

            _billing.StartSubscriptionLocked(s, now);
            cs.CustomerId = customer.Id;
            cs.Status = "complete";
            cs.PaymentStatus = cs.AmountTotal > 0 ? "paid" : "no_payment_required";
            cs.SubscriptionId = s.Id;
            cs.InvoiceId = s.LatestInvoiceId;
            cs.CompletedAt = now;
            _webhooks.Emit("checkout.session.completed", Render(cs), now);
            _recomputeNextDue();
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
            _processDue(_now());
            if (!_sessions.TryGetValue(id, out var cs))
            {
                return null;
            }

            var lines = cs.LineItems.Select(l =>
            {
                var price = _catalog.Price(l.PriceId);
                var name = _catalog.ProductName(price);
                return new CheckoutPageLine(name, l.Quantity, l.Amount, price.IsMetered);
            }).ToList();
            var email = cs.CustomerEmail ?? (cs.CustomerId is { } c && _customers.TryGet(c, out var customer) ? customer.Email : null);
            return new CheckoutPageModel(cs.Id, cs.Status, cs.Currency, cs.AmountTotal, email, cs.CancelUrl, cs.ExpiresAt, lines);
        }
    }
}
