using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace UsageBilling.Web.Data.Migrations.Sqlite
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
