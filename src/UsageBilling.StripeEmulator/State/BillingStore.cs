using System.Globalization;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

/// <summary>A line of the hosted invoice page.</summary>
internal sealed record InvoicePageLine(string Description, long Quantity, long Amount, long PeriodStart, long PeriodEnd);

/// <summary>What the emulator's hosted invoice page shows.</summary>
internal sealed record InvoicePageModel(
    string Id, string Number, string Status, string Currency, long Total, long PeriodStart, long PeriodEnd, IReadOnlyList<InvoicePageLine> Lines);

/// <summary>
/// The billing store: <c>/v1/subscriptions</c> and <c>/v1/invoices</c> — periods, the invoices they bill (the flat
/// fee in advance, metered usage in arrears), finalization and payment, the hosted invoice page.
/// </summary>
/// <remarks>
/// Guarded by <see cref="StripeBackend"/>'s one lock, like every store (see <see cref="WebhookStore"/>). The backend runs
/// the due work (period ends, finalizations) across stores: each operation here first runs what is due
/// (<c>processDue</c>) and, after a change to a period or a draft, has the backend recompute when work is next due
/// (<c>recomputeNextDue</c>) — both under the lock the caller already holds.
/// </remarks>
internal sealed class BillingStore(
    Lock gate,
    EmulatorRuntime runtime,
    Func<long> now,
    CustomerStore customers,
    CatalogStore catalog,
    MeterStore meters,
    WebhookStore webhooks,
    Action<long> processDue,
    Action recomputeNextDue)
{
    private readonly Lock _gate = gate;
    private readonly EmulatorRuntime _runtime = runtime;
    private readonly Func<long> _now = now;
    private readonly CustomerStore _customers = customers;
    private readonly CatalogStore _catalog = catalog;
    private readonly MeterStore _meters = meters;
    private readonly WebhookStore _webhooks = webhooks;
    private readonly Action<long> _processDue = processDue;
    private readonly Action _recomputeNextDue = recomputeNextDue;
    private readonly Table<Subscription> _subscriptions = new(x => x.Id);
    private readonly Table<Invoice> _invoices = new(x => x.Id);

    /// <summary>Drafts waiting for their <c>invoice.created</c> deliveries, by event id (not in the state file: a restart's lost deliveries time out at 72 hours).</summary>
    private readonly Dictionary<string, Invoice> _awaitingDeliveries = new(StringComparer.Ordinal);

    /// <summary>Every subscription in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<Subscription> Subscriptions => _subscriptions;

    /// <summary>Every invoice in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<Invoice> Invoices => _invoices;

    /// <summary>Replaces the contents with the state file's. Caller holds the lock.</summary>
    public void Load(IEnumerable<Subscription> subscriptions, IEnumerable<Invoice> invoices)
    {
        _subscriptions.Load(subscriptions);
        _invoices.Load(invoices);
    }

    /// <summary>Forgets every subscription and invoice. Caller holds the lock.</summary>
    public void Clear()
    {
        _subscriptions.Clear();
        _invoices.Clear();
        _awaitingDeliveries.Clear();
    }

    /// <summary>The live subscription whose period ends first, at or before <paramref name="now"/>, and that end (<see cref="long.MaxValue"/> when none). Caller holds the lock.</summary>
    public (Subscription? Subscription, long At) FirstPeriodEnd(long now)
    {
        Subscription? dueSub = null;
        var subAt = long.MaxValue;
        foreach (var s in _subscriptions)
        {
            if (s.Status == "canceled" || s.Items.Count == 0)
            {
                continue;
            }

            var end = s.Items.Min(i => i.PeriodEnd);
            if (end <= now && end < subAt)
            {
                subAt = end;
                dueSub = s;
            }
        }

        return (dueSub, subAt);
    }

    /// <summary>The draft due to finalize first, at or before <paramref name="now"/>. Caller holds the lock.</summary>
    public Invoice? FirstFinalization(long now)
    {
        Invoice? dueInv = null;
        foreach (var inv in _invoices)
        {
            if (inv.Status == "draft" && inv.FinalizeAt <= now && (dueInv is null || inv.FinalizeAt < dueInv.FinalizeAt))
            {
                dueInv = inv;
            }
        }

        return dueInv;
    }

    /// <summary>When a period ends or a draft finalizes next (<see cref="long.MaxValue"/> when never). Caller holds the lock.</summary>
    public long NextDue()
    {
        var next = long.MaxValue;
        foreach (var s in _subscriptions)
        {
            if (s.Status != "canceled" && s.Items.Count > 0)
            {
                next = Math.Min(next, s.Items.Min(i => i.PeriodEnd));
            }
        }

        foreach (var inv in _invoices)
        {
            if (inv.Status == "draft")
            {
                next = Math.Min(next, inv.FinalizeAt);
            }
        }

        return next;
    }

    private JsonObject Render(Subscription s)
    {
        var items = new JsonArray();
        foreach (var i in s.Items)
        {
            var price = _catalog.Price(i.PriceId);
            var o = new JsonObject
            {
                ["id"] = i.Id,
                ["object"] = "subscription_item",
                ["created"] = i.Created,
                ["current_period_end"] = i.PeriodEnd,
                ["current_period_start"] = i.PeriodStart,
                ["metadata"] = StripeBackend.Metadata(i.Metadata),
                ["price"] = CatalogStore.Render(price),
                ["subscription"] = s.Id,
            };
            if (!price.IsMetered)
            {
                o["quantity"] = i.Quantity ?? 1;
            }

            items.Add(o);
        }

        return new JsonObject
        {
            ["id"] = s.Id,
            ["object"] = "subscription",
            ["billing_cycle_anchor"] = s.BillingCycleAnchor,
            ["cancel_at"] = s.CancelAtPeriodEnd && s.Items.Count > 0 ? s.Items.Min(i => i.PeriodEnd) : null,
            ["cancel_at_period_end"] = s.CancelAtPeriodEnd,
            ["canceled_at"] = s.CanceledAt,
            ["collection_method"] = "charge_automatically",
            ["created"] = s.Created,
            ["currency"] = s.Currency,
            ["customer"] = s.CustomerId,
            ["description"] = s.Description,
            ["ended_at"] = s.EndedAt,
            ["items"] = new JsonObject
            {
                ["object"] = "list",
                ["data"] = items,
                ["has_more"] = false,
                ["total_count"] = s.Items.Count,
                ["url"] = $"/v1/subscription_items?subscription={s.Id}",
            },
            ["latest_invoice"] = s.LatestInvoiceId,
            ["livemode"] = false,
            ["metadata"] = StripeBackend.Metadata(s.Metadata),
            ["start_date"] = s.StartDate,
            ["status"] = s.Status,
        };
    }

    /// <summary>The first boundary strictly after <paramref name="after"/>, counted from the anchor so month ends do not drift.</summary>
    private static long NextBoundary(long anchor, Price price, long after)
    {
        var a = DateTimeOffset.FromUnixTimeSeconds(anchor);
        for (var k = 1L; ; k++)
        {
            var n = checked((int)(k * price.IntervalCount));
            var b = price.Interval switch
            {
                "day" => a.AddDays(n),
                "week" => a.AddDays(7 * n),
                "year" => a.AddYears(n),
                _ => a.AddMonths(n),
            };
            var unix = b.ToUnixTimeSeconds();
            if (unix > after)
            {
                return unix;
            }
        }
    }

    private SubscriptionItem NewItem(Params it, Subscription s, long now, long periodStart)
    {
        it.AllowOnly("price", "quantity", "metadata");
        var priceId = it.Required("price");
        var price = _catalog.PriceOrThrow(priceId, it.Name("price"));
        if (!price.IsRecurring)
        {
            throw StripeApiException.Invalid($"The price specified ({priceId}) is not recurring.", it.Name("price"));
        }

        if (price.Currency != s.Currency)
        {
            throw StripeApiException.Invalid("All prices on a subscription must have the same currency.", it.Name("price"));
        }

        var quantity = it.Long("quantity");
        if (price.IsMetered && quantity is not null)
        {
            throw StripeApiException.Invalid("Quantity should not be specified where usage_type is `metered`. Remove quantity from the request.", it.Name("quantity"));
        }

        if (quantity < 0)
        {
            throw StripeApiException.Invalid("Invalid quantity: must be at least 0", it.Name("quantity"));
        }

        var item = BuildItem(price, quantity, s, now, periodStart);
        StripeBackend.MergeMetadata(item.Metadata, it);
        return item;
    }

    /// <summary>A subscription item of an already validated price (metered: no quantity; licensed: default 1).</summary>
    public static SubscriptionItem BuildItem(Price price, long? quantity, Subscription s, long now, long periodStart) => new()
    {
        Id = StripeBackend.NewId("si_", 14),
        Created = now,
        PriceId = price.Id,
        Quantity = price.IsMetered ? null : quantity ?? 1,
        PeriodStart = periodStart,
        PeriodEnd = NextBoundary(s.BillingCycleAnchor, price, periodStart),
    };

    public JsonObject CreateSubscription(Params p)
    {
        p.AllowOnly("customer", "items", "metadata", "description", "cancel_at_period_end", "collection_method", "payment_behavior",
            "proration_behavior", "default_payment_method", "off_session", "currency");
        var customerId = p.Required("customer");
        var items = p.ObjArray("items");
        if (items is null || items.Count == 0)
        {
            throw StripeApiException.Missing("items");
        }

        var now = _now();
        lock (_gate)
        {
            _processDue(now);
            _customers.OrThrow(customerId, "customer");
            var currency = p.Str("currency") is { Length: > 0 } cur
                ? cur.ToLowerInvariant()
                : _catalog.PriceOrThrow(items[0].Str("price") ?? string.Empty, items[0].Name("price")).Currency;
            var s = new Subscription
            {
                Id = StripeBackend.NewId("sub_", 14),
                Created = now,
                CustomerId = customerId,
                StartDate = now,
                BillingCycleAnchor = now,
                Currency = currency,
                CancelAtPeriodEnd = p.Bool("cancel_at_period_end") ?? false,
                Description = p.Str("description"),
            };
            foreach (var it in items)
            {
                s.Items.Add(NewItem(it, s, now, now));
            }

            StripeBackend.MergeMetadata(s.Metadata, p);
            StartSubscriptionLocked(s, now);
            return Render(s);
        }
    }

    /// <summary>
    /// Stores a new subscription, emits <c>customer.subscription.created</c> and bills the first period's flat fee.
    /// Shared by <c>POST /v1/subscriptions</c> and Checkout completion. Caller holds the lock.
    /// </summary>
    public void StartSubscriptionLocked(Subscription s, long now)
    {
        _subscriptions.Add(s);
        _webhooks.Emit("customer.subscription.created", Render(s), now);

        // The flat fee is billed in advance: the first invoice holds the licensed items for the first period.
        var inv = NewInvoice(s, "subscription_create", now, now, finalizeAt: now);
        foreach (var item in s.Items.Where(i => !_catalog.Price(i.PriceId).IsMetered))
        {
            inv.Lines.Add(FlatLine(inv, s, item, item.PeriodStart, item.PeriodEnd));
        }

        s.LatestInvoiceId = inv.Id;
        _webhooks.Emit("invoice.created", Render(inv), now);
        FinalizeLocked(inv, now);
        _recomputeNextDue();
    }

    private Subscription SubscriptionOrThrow(string id) =>
        _subscriptions.TryGetValue(id, out var s) ? s : throw StripeApiException.NoSuch("subscription", id);

    public JsonObject GetSubscription(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            _processDue(_now());
            return Render(SubscriptionOrThrow(id));
        }
    }

    public JsonObject UpdateSubscription(string id, Params p)
    {
        p.AllowOnly("items", "metadata", "cancel_at_period_end", "description", "proration_behavior", "payment_behavior");
        var now = _now();
        lock (_gate)
        {
            _processDue(now);
            var s = SubscriptionOrThrow(id);
            if (s.Status == "canceled")
            {
                throw StripeApiException.Invalid("A canceled subscription can only update its cancellation_details and metadata.", null);
            }

            var previous = new JsonObject();
            if (p.ObjArray("items") is { } items)
            {
                previous["items"] = ((JsonObject)Render(s)["items"]!).DeepClone();
                foreach (var it in items)
                {
                    var itemId = it.Str("id");
                    if (string.IsNullOrEmpty(itemId))
                    {
                        var start = s.Items.Count > 0 ? s.Items.Min(i => i.PeriodStart) : now;
                        s.Items.Add(NewItem(it, s, now, start));
                        continue;
                    }

                    it.AllowOnly("id", "price", "quantity", "metadata", "deleted", "clear_usage");
                    var item = s.Items.FirstOrDefault(i => i.Id == itemId)
                        ?? throw StripeApiException.Invalid($"Invalid subscription_item: {itemId}", it.Name("id"), "resource_missing");
                    if (it.Bool("deleted") == true)
                    {
                        s.Items.Remove(item);
                        continue;
                    }

                    if (it.Str("price") is { Length: > 0 } newPrice)
                    {
                        var price = _catalog.PriceOrThrow(newPrice, it.Name("price"));
                        if (!price.IsRecurring)
                        {
                            throw StripeApiException.Invalid($"The price specified ({newPrice}) is not recurring.", it.Name("price"));
                        }

                        item.PriceId = newPrice;
                        item.Quantity = price.IsMetered ? null : item.Quantity ?? 1;
                    }

                    if (it.Long("quantity") is { } q)
                    {
                        if (_catalog.Price(item.PriceId).IsMetered)
                        {
                            throw StripeApiException.Invalid("Quantity should not be specified where usage_type is `metered`.", it.Name("quantity"));
                        }

                        item.Quantity = q;
                    }

                    StripeBackend.MergeMetadata(item.Metadata, it);
                }

                if (s.Items.Count == 0)
                {
                    throw StripeApiException.Invalid("A subscription must have at least one item.", "items");
                }
            }

            if (p.Bool("cancel_at_period_end") is { } cape)
            {
                previous["cancel_at_period_end"] = s.CancelAtPeriodEnd;
                s.CancelAtPeriodEnd = cape;
            }

            if (p.Has("description"))
            {
                previous["description"] = s.Description;
                s.Description = StripeBackend.NullIfEmpty(p.Str("description"));
            }

            if (p.Has("metadata"))
            {
                previous["metadata"] = StripeBackend.Metadata(s.Metadata);
                StripeBackend.MergeMetadata(s.Metadata, p);
            }

            _webhooks.Emit("customer.subscription.updated", Render(s), now, previous);
            _recomputeNextDue();
            return Render(s);
        }
    }

    public JsonObject CancelSubscription(string id, Params p)
    {
        p.AllowOnly("invoice_now", "prorate", "cancellation_details");
        var invoiceNow = p.Bool("invoice_now") ?? false;
        var now = _now();
        lock (_gate)
        {
            _processDue(now);
            var s = SubscriptionOrThrow(id);
            if (s.Status == "canceled")
            {
                throw StripeApiException.Invalid($"This subscription is already canceled: {id}", null, "resource_missing");
            }

            if (invoiceNow)
            {
                // Final invoice for the usage of the unfinished period.
                var start = s.Items.Min(i => i.PeriodStart);
                var inv = NewInvoice(s, "subscription_cycle", start, now, now + GraceSeconds);
                foreach (var item in s.Items.Where(i => _catalog.Price(i.PriceId).IsMetered))
                {
                    inv.Lines.Add(MeteredLine(inv, s, item, item.PeriodStart, now));
                }

                s.LatestInvoiceId = inv.Id;
                EmitCreated(inv, now);
            }

            s.Status = "canceled";
            s.CanceledAt = now;
            s.EndedAt = now;
            _webhooks.Emit("customer.subscription.deleted", Render(s), now);
            _recomputeNextDue();
            return Render(s);
        }
    }

    public JsonObject ListSubscriptions(Params p)
    {
        p.AllowOnly("customer", "price", "status", "limit", "starting_after", "ending_before", "created");
        var customer = p.Str("customer");
        var price = p.Str("price");
        var status = p.Enum("status", "active", "canceled", "all", "ended", "incomplete", "incomplete_expired", "past_due", "paused", "trialing", "unpaid");
        lock (_gate)
        {
            _processDue(_now());
            var items = StripeBackend.NewestFirst(_subscriptions, s =>
                (string.IsNullOrEmpty(customer) || s.CustomerId == customer)
                && (string.IsNullOrEmpty(price) || s.Items.Any(i => i.PriceId == price))
                && (status switch
                {
                    null or "" => s.Status != "canceled",
                    "all" => true,
                    "ended" => s.Status == "canceled",
                    _ => s.Status == status,
                }));
            return StripeBackend.ListOf(items, s => s.Id, Render, p, "/v1/subscriptions");
        }
    }

    // ---------------------------------------------------------------- invoices

    /// <summary>Stripe finalizes a draft at the latest 72 hours after creation, whatever its webhooks do.</summary>
    private const long MaxWebhookWaitSeconds = 72 * 3600;

    private long GraceSeconds => (long)_runtime.Options.InvoiceGracePeriod.TotalSeconds;

    private Invoice NewInvoice(Subscription s, string reason, long periodStart, long periodEnd, long finalizeAt)
    {
        var inv = new Invoice
        {
            Id = StripeBackend.NewId("in_", 14),
            Created = periodEnd,
            CustomerId = s.CustomerId,
            SubscriptionId = s.Id,
            PeriodStart = periodStart,
            PeriodEnd = periodEnd,
            FinalizeAt = finalizeAt,
            BillingReason = reason,
            Currency = s.Currency,
        };
        _invoices.Add(inv);
        return inv;
    }

    private InvoiceLine FlatLine(Invoice inv, Subscription s, SubscriptionItem item, long start, long end)
    {
        var price = _catalog.Price(item.PriceId);
        var qty = item.Quantity ?? 1;
        return new InvoiceLine
        {
            Id = StripeBackend.NewId("il_", 14),
            Description = $"{qty} × {_catalog.ProductName(price)}",
            Amount = RoundAmount(qty * (price.UnitAmount ?? 0)),
            Quantity = qty,
            PeriodStart = start,
            PeriodEnd = end,
            PriceId = price.Id,
            SubscriptionItemId = item.Id,
        };
    }

    private InvoiceLine MeteredLine(Invoice inv, Subscription s, SubscriptionItem item, long start, long end)
    {
        var line = new InvoiceLine
        {
            Id = StripeBackend.NewId("il_", 14),
            Description = string.Empty,
            PeriodStart = start,
            PeriodEnd = end,
            PriceId = item.PriceId,
            SubscriptionItemId = item.Id,
            Metered = true,
        };
        ComputeMetered(inv, line);
        return line;
    }

    /// <summary>Aggregates the meter over the line's period and prices it; a negative total bills 0.</summary>
    private void ComputeMetered(Invoice inv, InvoiceLine line)
    {
        var price = _catalog.Price(line.PriceId);
        var meter = price.MeterId is null ? null : _meters.Find(price.MeterId);
        var usage = meter is null ? 0 : _meters.Aggregate(meter, inv.CustomerId, line.PeriodStart, line.PeriodEnd);
        var qty = Math.Max(0, decimal.Floor(usage));
        line.Quantity = (long)qty;
        line.Amount = PriceAmount(price, qty);
        line.Description = $"{qty.ToString(CultureInfo.InvariantCulture)} × {_catalog.ProductName(price)} (metered)";
    }

    /// <summary>Amount in minor units for a quantity under the price's billing scheme (per_unit, graduated or volume tiers).</summary>
    public static long PriceAmount(Price price, decimal qty)
    {
        if (qty <= 0)
        {
            return 0;
        }

        if (price.BillingScheme != "tiered" || price.Tiers is null)
        {
            return RoundAmount(qty * (price.UnitAmount ?? 0));
        }

        if (price.TiersMode == "volume")
        {
            var tier = price.Tiers.First(t => t.UpTo is null || qty <= t.UpTo);
            return RoundAmount((qty * (tier.UnitAmount ?? 0)) + (tier.FlatAmount ?? 0));
        }

        decimal total = 0;
        decimal previous = 0;
        foreach (var tier in price.Tiers)
        {
            if (qty <= previous)
            {
                break;
            }

            var upper = tier.UpTo is { } u ? Math.Min(qty, u) : qty;
            var inTier = upper - previous;
            total += (inTier * (tier.UnitAmount ?? 0)) + (tier.FlatAmount ?? 0);
            previous = tier.UpTo ?? qty;
        }

        return RoundAmount(total);
    }

    private static long RoundAmount(decimal amount) => (long)Math.Round(amount, MidpointRounding.AwayFromZero);

    /// <summary>The path of a finalized invoice's hosted page under the emulator's root.</summary>
    public static string InvoicePagePath(string invoiceId) => $"{AdminEndpoints.Prefix}/invoices/{invoiceId}";

    /// <summary>Stripe numbers invoices per customer: an 8-character prefix of the customer and a 4-digit sequence.</summary>
    private string NextInvoiceNumber(string customerId)
    {
        var prefix = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(customerId)))[..8];
        var sequence = _invoices.Count(i => i.CustomerId == customerId && i.Number is not null) + 1;
        return string.Create(CultureInfo.InvariantCulture, $"{prefix}-{sequence:D4}");
    }

    /// <summary>What the hosted invoice page shows; <see langword="null"/> for unknown ids and drafts (Stripe has no page for a draft).</summary>
    public InvoicePageModel? InvoicePage(string id)
    {
        lock (_gate)
        {
            _processDue(_now());
            if (!_invoices.TryGetValue(id, out var inv) || inv.Status == "draft")
            {
                return null;
            }

            var lines = inv.Lines.Select(l => new InvoicePageLine(l.Description, l.Quantity, l.Amount, l.PeriodStart, l.PeriodEnd)).ToList();
            return new InvoicePageModel(inv.Id, inv.Number ?? "", inv.Status, inv.Currency, inv.Total, inv.PeriodStart, inv.PeriodEnd, lines);
        }
    }

    private JsonObject Render(Invoice inv)
    {
        if (inv.Status == "draft")
        {
            foreach (var line in inv.Lines.Where(l => l.Metered))
            {
                ComputeMetered(inv, line);
            }
        }

        var lines = new JsonArray();
        foreach (var l in inv.Lines)
        {
            var price = _catalog.Price(l.PriceId);
            lines.Add(new JsonObject
            {
                ["id"] = l.Id,
                ["object"] = "line_item",
                ["amount"] = l.Amount,
                ["currency"] = inv.Currency,
                ["description"] = l.Description,
                ["invoice"] = inv.Id,
                ["livemode"] = false,
                ["metadata"] = new JsonObject(),
                ["parent"] = new JsonObject
                {
                    ["type"] = "subscription_item_details",
                    ["subscription_item_details"] = new JsonObject
                    {
                        ["invoice_item"] = null,
                        ["proration"] = false,
                        ["subscription"] = inv.SubscriptionId,
                        ["subscription_item"] = l.SubscriptionItemId,
                    },
                },
                ["period"] = new JsonObject { ["end"] = l.PeriodEnd, ["start"] = l.PeriodStart },
                ["pricing"] = new JsonObject
                {
                    ["type"] = "price_details",
                    ["price_details"] = new JsonObject { ["price"] = price.Id, ["product"] = price.ProductId },
                    ["unit_amount_decimal"] = price.UnitAmount?.ToString(CultureInfo.InvariantCulture),
                },
                ["quantity"] = l.Quantity,
            });
        }

        var total = inv.Total;
        var due = Math.Max(0, total);
        return new JsonObject
        {
            ["id"] = inv.Id,
            ["object"] = "invoice",
            ["amount_due"] = due,
            ["amount_paid"] = inv.Status == "paid" ? due : 0,
            ["amount_remaining"] = inv.Status == "paid" ? 0 : due,
            ["auto_advance"] = inv.Status == "draft",
            ["automatically_finalizes_at"] = inv.Status == "draft" ? inv.FinalizeAt : null,
            ["billing_reason"] = inv.BillingReason,
            ["collection_method"] = "charge_automatically",
            ["created"] = inv.Created,
            ["currency"] = inv.Currency,
            ["customer"] = inv.CustomerId,
            ["lines"] = new JsonObject
            {
                ["object"] = "list",
                ["data"] = lines,
                ["has_more"] = false,
                ["total_count"] = inv.Lines.Count,
                ["url"] = $"/v1/invoices/{inv.Id}/lines",
            },
            ["livemode"] = false,
            ["metadata"] = new JsonObject(),
            ["number"] = inv.Number,
            ["hosted_invoice_url"] = inv.Status == "draft" || _runtime.PublicRoot is not { } root ? null : root + InvoicePagePath(inv.Id),
            ["parent"] = inv.SubscriptionId is null
                ? null
                : new JsonObject
                {
                    ["type"] = "subscription_details",
                    ["quote_details"] = null,
                    ["subscription_details"] = new JsonObject { ["metadata"] = new JsonObject(), ["subscription"] = inv.SubscriptionId },
                },
            ["period_end"] = inv.PeriodEnd,
            ["period_start"] = inv.PeriodStart,
            ["status"] = inv.Status,
            ["status_transitions"] = new JsonObject
            {
                ["finalized_at"] = inv.FinalizedAt,
                ["marked_uncollectible_at"] = null,
                ["paid_at"] = inv.PaidAt,
                ["voided_at"] = null,
            },
            ["subtotal"] = total,
            ["total"] = total,
        };
    }

    public JsonObject GetInvoice(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            _processDue(_now());
            return _invoices.TryGetValue(id, out var inv) ? Render(inv) : throw StripeApiException.NoSuch("invoice", id);
        }
    }

    public JsonObject ListInvoices(Params p)
    {
        p.AllowOnly("customer", "subscription", "status", "limit", "starting_after", "ending_before", "created", "collection_method");
        var customer = p.Str("customer");
        var subscription = p.Str("subscription");
        var status = p.Enum("status", "draft", "open", "paid", "uncollectible", "void");
        lock (_gate)
        {
            _processDue(_now());
            var items = StripeBackend.NewestFirst(_invoices, i =>
                (string.IsNullOrEmpty(customer) || i.CustomerId == customer)
                && (string.IsNullOrEmpty(subscription) || i.SubscriptionId == subscription)
                && (string.IsNullOrEmpty(status) || i.Status == status));
            return StripeBackend.ListOf(items, i => i.Id, Render, p, "/v1/invoices");
        }
    }

    /// <summary>
    /// Emits a draft's <c>invoice.created</c>. With <see cref="StripeEmulatorOptions.InvoiceFinalizationWaitsForWebhooks"/>,
    /// a draft whose event goes to endpoints waits for those deliveries (at most 72 hours, the deadline its payload
    /// shows): <see cref="InvoiceCreatedSettled"/> then sets when it finalizes. Caller holds the lock.
    /// </summary>
    private void EmitCreated(Invoice inv, long at)
    {
        var waits = _runtime.Options.InvoiceFinalizationWaitsForWebhooks && _webhooks.AnyEndpointWants("invoice.created");
        if (waits)
        {
            inv.FinalizeAt = inv.Created + MaxWebhookWaitSeconds;
        }

        var created = _webhooks.Emit("invoice.created", Render(inv), at);
        if (waits && created.Deliveries > 0)
        {
            _awaitingDeliveries[created.Id] = inv;
        }
    }

    /// <summary>
    /// Every delivery of an event has settled (succeeded or failed its last attempt): if it was a draft's
    /// <c>invoice.created</c>, the draft finalizes one grace period from now (or from its creation, if later), as
    /// Stripe does an hour after the last webhook was sent.
    /// </summary>
    public void InvoiceCreatedSettled(string eventId)
    {
        lock (_gate)
        {
            if (!_awaitingDeliveries.Remove(eventId, out var inv))
            {
                return;
            }

            // What came due with the old deadline happens first (a draft past its 72 hours is already final).
            var now = _now();
            _processDue(now);
            if (inv.Status == "draft")
            {
                inv.FinalizeAt = Math.Min(inv.FinalizeAt, Math.Max(now, inv.Created) + GraceSeconds);
                _recomputeNextDue();
                _processDue(now); // a zero grace period finalizes it now
            }
        }
    }

    /// <summary>Freezes metered lines, finalizes (status open) and — test mode has no failing cards — pays the invoice. Caller holds the lock.</summary>
    public void FinalizeLocked(Invoice inv, long at)
    {
        foreach (var line in inv.Lines.Where(l => l.Metered))
        {
            ComputeMetered(inv, line);
        }

        inv.Number ??= NextInvoiceNumber(inv.CustomerId);
        inv.Status = "open";
        inv.FinalizedAt = at;
        _webhooks.Emit("invoice.finalized", Render(inv), at);
        inv.Status = "paid";
        inv.PaidAt = at;
        _webhooks.Emit("invoice.paid", Render(inv), at);
    }

    /// <summary>Ends the subscription's period at <paramref name="end"/>: its usage invoice, the next period (or the cancellation). Caller holds the lock.</summary>
    public void ClosePeriod(Subscription s, long end)
    {
        var ended = s.Items.Where(i => i.PeriodEnd == end).ToList();
        var inv = NewInvoice(s, "subscription_cycle", ended.Min(i => i.PeriodStart), end, end + GraceSeconds);
        foreach (var item in ended.Where(i => _catalog.Price(i.PriceId).IsMetered))
        {
            inv.Lines.Add(MeteredLine(inv, s, item, item.PeriodStart, end));
        }

        var previous = new JsonObject { ["latest_invoice"] = s.LatestInvoiceId };
        foreach (var item in ended)
        {
            item.PeriodStart = end;
            item.PeriodEnd = NextBoundary(s.BillingCycleAnchor, _catalog.Price(item.PriceId), end);
        }

        if (!s.CancelAtPeriodEnd)
        {
            foreach (var item in ended.Where(i => !_catalog.Price(i.PriceId).IsMetered))
            {
                inv.Lines.Add(FlatLine(inv, s, item, item.PeriodStart, item.PeriodEnd));
            }
        }

        s.LatestInvoiceId = inv.Id;
        EmitCreated(inv, end);
        if (s.CancelAtPeriodEnd)
        {
            s.Status = "canceled";
            s.CanceledAt = end;
            s.EndedAt = end;
            _webhooks.Emit("customer.subscription.deleted", Render(s), end);
        }
        else
        {
            _webhooks.Emit("customer.subscription.updated", Render(s), end, previous);
        }
    }
}
