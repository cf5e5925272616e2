using System.Diagnostics.CodeAnalysis;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

/// <summary>The customers store: <c>/v1/customers</c>, and the lookups the other resources make.</summary>
/// <remarks>Guarded by <see cref="StripeBackend"/>'s one lock, like every store (see <see cref="WebhookStore"/>).</remarks>
internal sealed class CustomerStore(Lock gate, Func<long> now)
{
    private readonly Lock _gate = gate;
    private readonly Func<long> _now = now;
    private readonly Table<Customer> _customers = new(x => x.Id);

    /// <summary>Every customer (deleted ones too) in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<Customer> All => _customers;

    /// <summary>A customer by id, deleted ones too. Caller holds the lock.</summary>
    public bool TryGet(string id, [MaybeNullWhen(false)] out Customer customer) => _customers.TryGetValue(id, out customer);

    /// <summary>Adds a customer made elsewhere (Checkout). Caller holds the lock.</summary>
    public void Add(Customer customer) => _customers.Add(customer);

    /// <summary>Replaces the contents with the state file's. Caller holds the lock.</summary>
    public void Load(IEnumerable<Customer> customers) => _customers.Load(customers);

    /// <summary>Forgets every customer. Caller holds the lock.</summary>
    public void Clear() => _customers.Clear();

    private static JsonObject Render(Customer c) => c.Deleted
        ? new JsonObject { ["id"] = c.Id, ["object"] = "customer", ["deleted"] = true }
        : new JsonObject
        {
            ["id"] = c.Id,
            ["object"] = "customer",
            ["balance"] = 0,
            ["created"] = c.Created,
            ["currency"] = null,
            ["delinquent"] = false,
            ["description"] = c.Description,
            ["email"] = c.Email,
            ["livemode"] = false,
            ["metadata"] = StripeBackend.Metadata(c.Metadata),
            ["name"] = c.Name,
        };

    public JsonObject Create(Params p)
    {
        p.AllowOnly("email", "name", "description", "metadata", "phone", "address", "test_clock");
        var c = new Customer
        {
            Id = StripeBackend.NewId("cus_", 14),
            Created = _now(),
            Email = p.Str("email", 512),
            Name = p.Str("name", 256),
            Description = p.Str("description"),
        };
        StripeBackend.MergeMetadata(c.Metadata, p);
        lock (_gate)
        {
            _customers.Add(c);
            return Render(c);
        }
    }

    /// <summary>A customer not deleted, or Stripe's 404 naming <paramref name="param"/>. Caller holds the lock.</summary>
    public Customer OrThrow(string id, string param = "id") =>
        _customers.TryGetValue(id, out var c) && !c.Deleted ? c : throw StripeApiException.NoSuch("customer", id, param);

    public JsonObject Get(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return _customers.TryGetValue(id, out var c) ? Render(c) : throw StripeApiException.NoSuch("customer", id);
        }
    }

    public JsonObject Update(string id, Params p)
    {
        p.AllowOnly("email", "name", "description", "metadata", "phone", "address");
        lock (_gate)
        {
            var c = OrThrow(id);
            if (p.Has("email"))
            {
                c.Email = StripeBackend.NullIfEmpty(p.Str("email", 512));
            }

            if (p.Has("name"))
            {
                c.Name = StripeBackend.NullIfEmpty(p.Str("name", 256));
            }

            if (p.Has("description"))
            {
                c.Description = StripeBackend.NullIfEmpty(p.Str("description"));
            }

            StripeBackend.MergeMetadata(c.Metadata, p);
            return Render(c);
        }
    }

    public JsonObject Delete(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            var c = OrThrow(id);
            c.Deleted = true;
            return Render(c);
        }
    }

    public JsonObject List(Params p)
    {
        p.AllowOnly("email", "limit", "starting_after", "ending_before", "created", "test_clock");
        var email = p.Str("email", 512);
        lock (_gate)
        {
            var items = StripeBackend.NewestFirst(_customers, c => !c.Deleted && (string.IsNullOrEmpty(email) || c.Email == email));
            return StripeBackend.ListOf(items, c => c.Id, c => Render(c), p, "/v1/customers");
        }
    }
}
