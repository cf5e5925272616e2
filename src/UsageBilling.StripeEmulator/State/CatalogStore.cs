using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

/// <summary>The catalog store: <c>/v1/products</c> and <c>/v1/prices</c>, and the price lookups subscriptions, invoices and Checkout make.</summary>
/// <remarks>Guarded by <see cref="StripeBackend"/>'s one lock, like every store (see <see cref="WebhookStore"/>).</remarks>
internal sealed class CatalogStore(Lock gate, Func<long> now, MeterStore meters)
{
    private readonly Lock _gate = gate;
    private readonly Func<long> _now = now;
    private readonly MeterStore _meters = meters;
    private readonly Table<Product> _products = new(x => x.Id);
    private readonly Table<Price> _prices = new(x => x.Id);

    /// <summary>Every product in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<Product> Products => _products;

    /// <summary>Every price in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<Price> Prices => _prices;

    /// <summary>A price known to exist (one a subscription item, invoice line or Checkout line names). Caller holds the lock.</summary>
    public Price Price(string id) => _prices[id];

    /// <summary>A price by id. Caller holds the lock.</summary>
    public bool TryGetPrice(string id, [MaybeNullWhen(false)] out Price price) => _prices.TryGetValue(id, out price);

    /// <summary>The name of the price's product (its id when the product is unknown), as invoice and Checkout lines show it. Caller holds the lock.</summary>
    public string ProductName(Price price) => _products.GetValueOrDefault(price.ProductId)?.Name ?? price.ProductId;

    /// <summary>Replaces the contents with the state file's. Caller holds the lock.</summary>
    public void Load(IEnumerable<Product> products, IEnumerable<Price> prices)
    {
        _products.Load(products);
        _prices.Load(prices);
    }

    /// <summary>Forgets every product and price. Caller holds the lock.</summary>
    public void Clear()
    {
        _products.Clear();
        _prices.Clear();
    }

    private static JsonObject Render(Product x) => new()
    {
        ["id"] = x.Id,
        ["object"] = "product",
        ["active"] = x.Active,
        ["created"] = x.Created,
        ["description"] = x.Description,
        ["livemode"] = false,
        ["metadata"] = StripeBackend.Metadata(x.Metadata),
        ["name"] = x.Name,
        ["type"] = "service",
        ["updated"] = x.Updated,
    };

    public JsonObject CreateProduct(Params p)
    {
        p.AllowOnly("id", "name", "description", "active", "metadata");
        var now = _now();
        var x = new Product
        {
            Id = StripeBackend.NullIfEmpty(p.Str("id")) ?? StripeBackend.NewId("prod_", 14),
            Name = p.Required("name"),
            Description = p.Str("description"),
            Active = p.Bool("active") ?? true,
            Created = now,
            Updated = now,
        };
        StripeBackend.MergeMetadata(x.Metadata, p);
        lock (_gate)
        {
            if (_products.ContainsKey(x.Id))
            {
                throw StripeApiException.Invalid($"Product already exists.", "id", "resource_already_exists");
            }

            _products.Add(x);
            return Render(x);
        }
    }

    private Product ProductOrThrow(string id, string param = "id") =>
        _products.TryGetValue(id, out var x) ? x : throw StripeApiException.NoSuch("product", id, param);

    public JsonObject GetProduct(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return Render(ProductOrThrow(id));
        }
    }

    public JsonObject UpdateProduct(string id, Params p)
    {
        p.AllowOnly("name", "description", "active", "metadata");
        lock (_gate)
        {
            var x = ProductOrThrow(id);
            if (StripeBackend.NullIfEmpty(p.Str("name")) is { } name)
            {
                x.Name = name;
            }

            if (p.Has("description"))
            {
                x.Description = StripeBackend.NullIfEmpty(p.Str("description"));
            }

            x.Active = p.Bool("active") ?? x.Active;
            StripeBackend.MergeMetadata(x.Metadata, p);
            x.Updated = _now();
            return Render(x);
        }
    }

    public JsonObject ListProducts(Params p)
    {
        p.AllowOnly("active", "ids", "limit", "starting_after", "ending_before", "created");
        var active = p.Bool("active");
        var ids = p.StrArray("ids");
        lock (_gate)
        {
            var items = StripeBackend.NewestFirst(_products, x => (active is null || x.Active == active) && (ids is null || ids.Contains(x.Id)));
            return StripeBackend.ListOf(items, x => x.Id, x => Render(x), p, "/v1/products");
        }
    }

    // ---------------------------------------------------------------- prices

    /// <summary>A price as Stripe renders it (also inside subscription items and Checkout line items).</summary>
    public static JsonObject Render(Price x)
    {
        var o = new JsonObject
        {
            ["id"] = x.Id,
            ["object"] = "price",
            ["active"] = x.Active,
            ["billing_scheme"] = x.BillingScheme,
            ["created"] = x.Created,
            ["currency"] = x.Currency,
            ["livemode"] = false,
            ["lookup_key"] = x.LookupKey,
            ["metadata"] = StripeBackend.Metadata(x.Metadata),
            ["nickname"] = x.Nickname,
            ["product"] = x.ProductId,
            ["recurring"] = x.IsRecurring
                ? new JsonObject
                {
                    ["interval"] = x.Interval,
                    ["interval_count"] = x.IntervalCount,
                    ["meter"] = x.MeterId,
                    ["trial_period_days"] = null,
                    ["usage_type"] = x.UsageType,
                }
                : null,
            ["tax_behavior"] = "unspecified",
            ["tiers_mode"] = x.TiersMode,
            ["type"] = x.IsRecurring ? "recurring" : "one_time",
            ["unit_amount"] = x.UnitAmount is { } u && u == decimal.Truncate(u) ? (long)u : null,
            ["unit_amount_decimal"] = x.UnitAmount?.ToString(CultureInfo.InvariantCulture),
        };
        if (x.Tiers is not null)
        {
            var tiers = new JsonArray();
            foreach (var t in x.Tiers)
            {
                tiers.Add(new JsonObject
                {
                    ["flat_amount"] = t.FlatAmount,
                    ["flat_amount_decimal"] = t.FlatAmount?.ToString(CultureInfo.InvariantCulture),
                    ["unit_amount"] = t.UnitAmount is { } tu && tu == decimal.Truncate(tu) ? (long)tu : null,
                    ["unit_amount_decimal"] = t.UnitAmount?.ToString(CultureInfo.InvariantCulture),
                    ["up_to"] = t.UpTo,
                });
            }

            o["tiers"] = tiers;
        }

        return o;
    }

    public JsonObject CreatePrice(Params p)
    {
        p.AllowOnly("currency", "product", "unit_amount", "unit_amount_decimal", "recurring", "billing_scheme", "tiers_mode", "tiers",
            "lookup_key", "transfer_lookup_key", "nickname", "active", "metadata", "tax_behavior");
        var currency = p.Required("currency").ToLowerInvariant();
        var productId = p.Required("product");
        var scheme = p.Enum("billing_scheme", "per_unit", "tiered");
        scheme = string.IsNullOrEmpty(scheme) ? "per_unit" : scheme;
        var unitAmount = (decimal?)p.Long("unit_amount") ?? p.Decimal("unit_amount_decimal");
        if (p.Has("unit_amount") && p.Has("unit_amount_decimal"))
        {
            throw StripeApiException.Invalid("You may only specify one of these parameters: unit_amount, unit_amount_decimal.", "unit_amount");
        }

        if (unitAmount < 0)
        {
            throw StripeApiException.Invalid("Invalid unit_amount: must be greater than or equal to 0", "unit_amount");
        }

        string? interval = null;
        long intervalCount = 1;
        string? usageType = null;
        string? meterId = null;
        if (p.Obj("recurring") is { } r)
        {
            r.AllowOnly("interval", "interval_count", "usage_type", "meter", "trial_period_days");
            interval = r.Enum("interval", "day", "week", "month", "year");
            if (string.IsNullOrEmpty(interval))
            {
                throw StripeApiException.Missing("recurring[interval]");
            }

            intervalCount = r.Long("interval_count") ?? 1;
            if (intervalCount < 1)
            {
                throw StripeApiException.Invalid("Invalid recurring[interval_count]: must be at least 1", "recurring[interval_count]");
            }

            usageType = r.Enum("usage_type", "licensed", "metered");
            usageType = string.IsNullOrEmpty(usageType) ? "licensed" : usageType;
            meterId = StripeBackend.NullIfEmpty(r.Str("meter"));
            if (usageType == "metered" && meterId is null)
            {
                throw StripeApiException.Invalid("A meter is required for metered prices: pass recurring[meter].", "recurring[meter]");
            }

            if (usageType == "licensed" && meterId is not null)
            {
                throw StripeApiException.Invalid("recurring[meter] can only be set when recurring[usage_type] is metered.", "recurring[meter]");
            }
        }

        string? tiersMode = null;
        List<PriceTier>? tiers = null;
        if (scheme == "tiered")
        {
            tiersMode = p.Enum("tiers_mode", "graduated", "volume");
            if (string.IsNullOrEmpty(tiersMode))
            {
                throw StripeApiException.Missing("tiers_mode");
            }

            var rawTiers = p.ObjArray("tiers");
            if (rawTiers is null || rawTiers.Count == 0)
            {
                throw StripeApiException.Missing("tiers");
            }

            tiers = [];
            for (var i = 0; i < rawTiers.Count; i++)
            {
                var t = rawTiers[i];
                t.AllowOnly("up_to", "unit_amount", "unit_amount_decimal", "flat_amount", "flat_amount_decimal");
                var upToRaw = t.Str("up_to");
                long? upTo = upToRaw switch
                {
                    null or "" => throw StripeApiException.Missing(t.Name("up_to")),
                    "inf" => null,
                    _ => t.Long("up_to"),
                };
                if (upTo is null && i != rawTiers.Count - 1)
                {
                    throw StripeApiException.Invalid("Only the last tier may have up_to=inf.", t.Name("up_to"));
                }

                if (upTo is not null && i == rawTiers.Count - 1)
                {
                    throw StripeApiException.Invalid("The last tier must have up_to=inf.", t.Name("up_to"));
                }

                if (upTo is { } u && tiers.Count > 0 && tiers[^1].UpTo >= u)
                {
                    throw StripeApiException.Invalid("Tiers must be in increasing order of up_to.", t.Name("up_to"));
                }

                tiers.Add(new PriceTier
                {
                    UpTo = upTo,
                    UnitAmount = (decimal?)t.Long("unit_amount") ?? t.Decimal("unit_amount_decimal"),
                    FlatAmount = t.Long("flat_amount") ?? (long?)t.Decimal("flat_amount_decimal"),
                });
            }

            if (unitAmount is not null)
            {
                throw StripeApiException.Invalid("unit_amount cannot be used with billing_scheme=tiered.", "unit_amount");
            }
        }
        else if (p.Has("tiers") || p.Has("tiers_mode"))
        {
            throw StripeApiException.Invalid("tiers and tiers_mode require billing_scheme=tiered.", p.Has("tiers") ? "tiers" : "tiers_mode");
        }
        else if (unitAmount is null)
        {
            throw StripeApiException.Missing("unit_amount");
        }

        var lookupKey = StripeBackend.NullIfEmpty(p.Str("lookup_key", 200));
        var transfer = p.Bool("transfer_lookup_key") ?? false;
        lock (_gate)
        {
            ProductOrThrow(productId, "product");
            if (meterId is not null)
            {
                if (!_meters.Contains(meterId))
                {
                    throw StripeApiException.NoSuch("billing.meter", meterId, "recurring[meter]");
                }
            }

            if (lookupKey is not null && _prices.FirstOrDefault(x => x.LookupKey == lookupKey) is { } holder)
            {
                if (!transfer)
                {
                    throw StripeApiException.Invalid(
                        $"A price (`{holder.Id}`) already uses that lookup key. Pass transfer_lookup_key=true to move it.",
                        "lookup_key",
                        "lookup_key_already_exists");
                }

                holder.LookupKey = null;
            }

            var price = new Price
            {
                Id = StripeBackend.NewId("price_"),
                Created = _now(),
                ProductId = productId,
                Currency = currency,
                UnitAmount = unitAmount,
                Active = p.Bool("active") ?? true,
                Nickname = p.Str("nickname"),
                LookupKey = lookupKey,
                Interval = interval,
                IntervalCount = intervalCount,
                UsageType = usageType,
                MeterId = meterId,
                BillingScheme = scheme,
                TiersMode = tiersMode,
                Tiers = tiers,
            };
            StripeBackend.MergeMetadata(price.Metadata, p);
            _prices.Add(price);
            return Render(price);
        }
    }

    /// <summary>A price, or Stripe's 404 naming <paramref name="param"/>. Caller holds the lock.</summary>
    public Price PriceOrThrow(string id, string param = "id") =>
        _prices.TryGetValue(id, out var x) ? x : throw StripeApiException.NoSuch("price", id, param);

    public JsonObject GetPrice(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return Render(PriceOrThrow(id));
        }
    }

    public JsonObject UpdatePrice(string id, Params p)
    {
        p.AllowOnly("active", "nickname", "lookup_key", "transfer_lookup_key", "metadata");
        lock (_gate)
        {
            var x = PriceOrThrow(id);
            x.Active = p.Bool("active") ?? x.Active;
            if (p.Has("nickname"))
            {
                x.Nickname = StripeBackend.NullIfEmpty(p.Str("nickname"));
            }

            if (p.Has("lookup_key"))
            {
                var key = StripeBackend.NullIfEmpty(p.Str("lookup_key", 200));
                if (key is not null && _prices.FirstOrDefault(o => o.LookupKey == key && o != x) is { } holder)
                {
                    if (p.Bool("transfer_lookup_key") != true)
                    {
                        throw StripeApiException.Invalid(
                            $"A price (`{holder.Id}`) already uses that lookup key.", "lookup_key", "lookup_key_already_exists");
                    }

                    holder.LookupKey = null;
                }

                x.LookupKey = key;
            }

            StripeBackend.MergeMetadata(x.Metadata, p);
            return Render(x);
        }
    }

    public JsonObject ListPrices(Params p)
    {
        p.AllowOnly("active", "product", "type", "currency", "lookup_keys", "recurring", "limit", "starting_after", "ending_before", "created");
        var active = p.Bool("active");
        var product = p.Str("product");
        var type = p.Enum("type", "one_time", "recurring");
        var currency = p.Str("currency");
        var lookupKeys = p.StrArray("lookup_keys");
        lock (_gate)
        {
            var items = StripeBackend.NewestFirst(_prices, x =>
                (active is null || x.Active == active)
                && (string.IsNullOrEmpty(product) || x.ProductId == product)
                && (string.IsNullOrEmpty(type) || (type == "recurring") == x.IsRecurring)
                && (string.IsNullOrEmpty(currency) || x.Currency == currency)
                && (lookupKeys is null || (x.LookupKey is not null && lookupKeys.Contains(x.LookupKey))));
            return StripeBackend.ListOf(items, x => x.Id, x => Render(x), p, "/v1/prices");
        }
    }
}
