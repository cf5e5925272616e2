using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace UsageBilling.Web.Data.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class StripeWebhookEvents : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {

        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {

        }
    }
}
